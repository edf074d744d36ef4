use super::*;

fn none(_: &str) -> Option<String> {
    None
}

fn host(h: &str, port: u16) -> HostEntry {
    HostEntry {
        host: h.to_owned(),
        port,
    }
}

#[test]
fn the_guides_file_gives_the_other_nodes() {
    let j = parse(include_str!("testdata/guide-node1.xml"), &none).unwrap();
    assert_eq!(
        j.hosts,
        vec![
            host("kms2.myCorp.com", 7800),
            host("kms3.myCorp.com", 7800),
            host("kms4.myCorp.com", 7800)
        ]
    );
    assert_eq!(j.port_range, 0);
    assert_eq!(j.hosts_line, 11);
    assert_eq!(j.bind_port, Some((7800, 6)));
    // SITE_LOCAL is a JGroups keyword, left for the caller to recognize.
    assert_eq!(j.bind_addr, Some(("SITE_LOCAL".to_owned(), 6)));
}

#[test]
fn placeholders_take_properties_then_defaults() {
    let props = |p: &str| match p {
        "jgroups.tcp.address" => Some("10.0.0.1".to_owned()),
        _ => None,
    };
    let j = parse(include_str!("testdata/placeholders.xml"), &props).unwrap();
    assert_eq!(
        j.hosts,
        vec![host("10.0.0.2", 7800), host("10.0.0.3", 7801)]
    );
    assert_eq!(j.port_range, 1);
    assert_eq!(j.bind_addr, Some(("10.0.0.1".to_owned(), 3)));
    assert_eq!(j.bind_port, Some((7800, 3)));
    let port = |p: &str| (p == "jgroups.tcp.port").then(|| "7900".to_owned());
    let both = |p: &str| props(p).or_else(|| port(p));
    let j = parse(include_str!("testdata/placeholders.xml"), &both).unwrap();
    assert_eq!(j.bind_port, Some((7900, 3)));
}

#[test]
fn a_placeholder_without_value_or_default_names_the_property() {
    let err = parse(include_str!("testdata/placeholders.xml"), &none).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].line, Some(3));
    assert!(
        err[0].message.contains("${jgroups.tcp.address}"),
        "{}",
        err[0]
    );
    assert!(err[0].message.contains("kms.cluster.address"), "{}", err[0]);
}

#[test]
fn alternatives_in_a_placeholder_are_tried_in_order() {
    let props = |p: &str| (p == "b").then(|| "h2[7801]".to_owned());
    let j = parse(
        "<config><TCPPING initial_hosts=\"${a,b:h9[1]}\"/></config>",
        &props,
    )
    .unwrap();
    assert_eq!(j.hosts, vec![host("h2", 7801)]);
    assert_eq!(j.port_range, 1, "JGroups' default port_range");
    assert_eq!(j.bind_port, None);
}

#[test]
fn mping_is_named_as_unsupported_with_its_line() {
    let err = parse(include_str!("testdata/mping.xml"), &none).unwrap_err();
    let text: Vec<String> = err.iter().map(ToString::to_string).collect();
    assert!(
        text.iter().any(|t| t
            .starts_with("line 4: <MPING> (multicast discovery) is not supported")
            && t.contains("TCPPING initial_hosts")),
        "{text:?}"
    );
    assert!(text.iter().any(|t| t.contains("no <TCPPING>")), "{text:?}");
}

#[test]
fn a_malformed_entry_is_shown_with_the_expected_form() {
    let err = parse(include_str!("testdata/bad-hosts.xml"), &none).unwrap_err();
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].line, Some(5));
    assert!(
        err[0]
            .message
            .contains("'kms3.myCorp.com:7800' is not host[port]"),
        "{}",
        err[0]
    );
}

#[test]
fn broken_xml_gives_the_line() {
    let err = parse(include_str!("testdata/broken.xml"), &none).unwrap_err();
    assert_eq!(err.len(), 1);
    assert!(err[0].line.is_some_and(|l| l >= 3), "{}", err[0]);
    assert!(err[0].message.contains("not well-formed XML"), "{}", err[0]);
}

#[test]
fn hostile_values_are_refused_not_echoed_raw() {
    for bad in [
        "a[0]",
        "a[65536]",
        "a[7800",
        "[7800]",
        "a b[7800]x",
        "a/b[7800]",
        "a\u{1b}[31m[7800]",
    ] {
        let xml = format!("<config><TCPPING initial_hosts=\"{bad}\"/></config>");
        let err = parse(&xml, &none).unwrap_err();
        assert!(!err[0].message.contains('\u{1b}'), "{}", err[0]);
    }
    let xml = "<config><TCPPING initial_hosts=\"a[1]\" port_range=\"99\"/></config>";
    assert!(
        parse(xml, &none).unwrap_err()[0]
            .message
            .contains("port_range")
    );
}

#[test]
fn too_many_addresses_are_refused() {
    let hosts: Vec<String> = (1..=40).map(|i| format!("10.0.0.{i}[7800]")).collect();
    let xml = format!(
        "<config><TCPPING initial_hosts=\"{}\" port_range=\"1\"/></config>",
        hosts.join(",")
    );
    let err = parse(&xml, &none).unwrap_err();
    assert!(err[0].message.contains("80 addresses"), "{}", err[0]);
}

#[test]
fn entries_may_span_lines_and_repeat() {
    let xml = "<config><TCPPING initial_hosts=\"a[1],\n   b[2] ,a[1],\"/></config>";
    let j = parse(xml, &none).unwrap();
    assert_eq!(j.hosts, vec![host("a", 1), host("b", 2)]);
}

#[test]
fn a_dtd_is_refused() {
    let xml =
        "<!DOCTYPE x [<!ENTITY e \"a[1]\">]><config><TCPPING initial_hosts=\"&e;\"/></config>";
    assert!(parse(xml, &none).is_err());
}
