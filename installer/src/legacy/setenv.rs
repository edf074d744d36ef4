//! Tomcat's `setenv.sh` (JGroups address and port, `JAVA_HOME`) and the
//! JGroups file (`TCPPING initial_hosts`).

/// What `setenv.sh` says, from its uncommented lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetEnv {
    /// `-Djgroups.tcp.address=`: this node's cluster address.
    pub jgroups_address: Option<String>,
    /// `-Djgroups.tcp.port=`: this node's cluster port (7800 when absent).
    pub jgroups_port: Option<String>,
    /// `JAVA_HOME=`.
    pub java_home: Option<String>,
}

/// Read the text of `setenv.sh`. Only uncommented lines count, as the shell
/// would run them; a later assignment wins, as in the shell.
pub fn read_setenv(text: &str) -> SetEnv {
    let mut s = SetEnv::default();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') {
            continue;
        }
        if let Some(v) = sysprop(l, "-Djgroups.tcp.address=") {
            s.jgroups_address = Some(v);
        }
        if let Some(v) = sysprop(l, "-Djgroups.tcp.port=") {
            s.jgroups_port = Some(v);
        }
        let assign = l.strip_prefix("export ").unwrap_or(l).trim_start();
        if let Some(v) = assign.strip_prefix("JAVA_HOME=") {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
            if !v.is_empty() {
                s.java_home = Some(v.to_owned());
            }
        }
    }
    s
}

fn sysprop(line: &str, flag: &str) -> Option<String> {
    let (_, rest) = line.split_once(flag)?;
    let v: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
        .collect();
    (!v.is_empty()).then_some(v)
}

/// The other nodes of the cluster: `TCPPING initial_hosts` of a JGroups
/// file, one `host[port]` item each (empty when the file lists none).
pub fn read_initial_hosts(text: &str) -> Result<Vec<String>, String> {
    let doc =
        roxmltree::Document::parse(text).map_err(|e| format!("it is not well-formed XML ({e})"))?;
    Ok(doc
        .descendants()
        .find(|n| n.has_tag_name("TCPPING"))
        .and_then(|n| n.attribute("initial_hosts"))
        .map(|h| {
            h.split(',')
                .map(|i| i.split_whitespace().collect::<String>())
                .filter(|i| !i.is_empty())
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_setenv() {
        let s = read_setenv(
            "#JAVA_OPTS=\"${JAVA_OPTS} -Djgroups.tcp.address=<ipAddress> -Djgroups.tcp.port=<portNum>\"\n\
             JAVA_OPTS=\"${JAVA_OPTS} -Djgroups.tcp.address=kms1.AcmeXYZ.com\"\n\
             export JAVA_HOME=\"/usr/lib/jvm/jre\"\n",
        );
        assert_eq!(s.jgroups_address.as_deref(), Some("kms1.AcmeXYZ.com"));
        assert_eq!(s.jgroups_port, None);
        assert_eq!(s.java_home.as_deref(), Some("/usr/lib/jvm/jre"));
    }

    #[test]
    fn guide_jgroups() {
        let h = read_initial_hosts(
            "<config><TCP bind_port=\"7800\"/><TCPPING\n initial_hosts=\"kms2.myCorp.com[7800],kms3.myCorp.com[7800],kms4.myCorp.com\n[7800]\"\n/></config>",
        )
        .expect("read");
        assert_eq!(
            h,
            [
                "kms2.myCorp.com[7800]",
                "kms3.myCorp.com[7800]",
                "kms4.myCorp.com[7800]"
            ]
        );
        assert!(
            read_initial_hosts("<config><TCPPING initial_hosts=\"\"/></config>")
                .expect("read")
                .is_empty()
        );
    }
}
