//! The real `rpm`: what is installed, what a package file holds, installing,
//! upgrading, downgrading (rollback) and erasing, all under the root.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use crate::InstallError;
use crate::cmd::{self, Output};
use crate::paths::Root;

const QF: &str = "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n";

/// Name, epoch, version, release and architecture of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    pub name: String,
    pub epoch: u32,
    pub version: String,
    pub release: String,
    pub arch: String,
}

impl PackageInfo {
    fn parse(line: &str) -> Option<Self> {
        let mut f = line.trim_end().split('\t');
        let name = f.next()?.to_owned();
        let epoch = f.next()?;
        let epoch = if epoch == "(none)" {
            0
        } else {
            epoch.parse().ok()?
        };
        Some(Self {
            name,
            epoch,
            version: f.next()?.to_owned(),
            release: f.next()?.to_owned(),
            arch: f.next()?.to_owned(),
        })
    }

    /// rpm's ordering of epoch, version and release.
    pub fn cmp_evr(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| vercmp(&self.version, &other.version))
            .then_with(|| vercmp(&self.release, &other.release))
    }

    /// `version-release`, as operators read it.
    pub fn vr(&self) -> String {
        format!("{}-{}", self.version, self.release)
    }
}

impl fmt::Display for PackageInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}-{}", self.name, self.version, self.release)
    }
}

/// rpm's version comparison (`rpmvercmp`): alternating runs of digits and
/// letters compared segment by segment, digits numerically and newer than
/// letters, `~` sorts before anything (pre-releases), `^` after the base.
pub fn vercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while let Some((&c, rest)) = a.split_first() {
            if sep(c) { a = rest } else { break }
        }
        while let Some((&c, rest)) = b.split_first() {
            if sep(c) { b = rest } else { break }
        }
        match (a.first(), b.first()) {
            (Some(b'~'), Some(b'~')) => {
                a = a.get(1..).unwrap_or_default();
                b = b.get(1..).unwrap_or_default();
                continue;
            }
            (Some(b'~'), _) => return Ordering::Less,
            (_, Some(b'~')) => return Ordering::Greater,
            (Some(b'^'), Some(b'^')) => {
                a = a.get(1..).unwrap_or_default();
                b = b.get(1..).unwrap_or_default();
                continue;
            }
            (Some(b'^'), None) => return Ordering::Greater,
            (None, Some(b'^')) => return Ordering::Less,
            (Some(b'^'), _) => return Ordering::Less,
            (_, Some(b'^')) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            _ => {}
        }
        let numeric = a.first().is_some_and(u8::is_ascii_digit);
        let take = |s: &[u8]| {
            s.iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (na, nb) = (take(a), take(b));
        if nb == 0 {
            // Different kinds of segment: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (sa, ra) = a.split_at_checked(na).unwrap_or((a, &[]));
        let (sb, rb) = b.split_at_checked(nb).unwrap_or((b, &[]));
        let ord = if numeric {
            let ta = trim_zeros(sa);
            let tb = trim_zeros(sb);
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        a = ra;
        b = rb;
    }
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    s.get(n..).unwrap_or_default()
}

/// `rpm` under a root.
#[derive(Clone, Debug)]
pub struct Rpm {
    root: Root,
    nodeps: bool,
}

impl Rpm {
    /// `rpm --root ROOT`; `nodeps` adds `--nodeps` to installs (scratch roots
    /// whose rpm database lists no packages; never on a real node).
    pub fn new(root: &Root, nodeps: bool) -> Result<Self, InstallError> {
        if !cmd::on_path("rpm") {
            return Err(InstallError::MissingTool {
                program: "rpm",
                hint: "this installer needs a RPM-based system (RHEL 8 or 9); nothing was changed",
            });
        }
        Ok(Self {
            root: root.clone(),
            nodeps,
        })
    }

    fn base(&self) -> Vec<OsString> {
        vec!["--root".into(), self.root.dir().into()]
    }

    fn run(&self, args: &[&str], file: Option<&Path>) -> Result<Output, InstallError> {
        let mut a = self.base();
        a.extend(args.iter().map(OsString::from));
        if let Some(f) = file {
            a.push(f.into());
        }
        cmd::run("rpm", &a)
    }

    /// The installed package `name`, if any.
    pub fn installed(&self, name: &str) -> Result<Option<PackageInfo>, InstallError> {
        let out = self.run(&["-q", "--qf", QF, name], None)?;
        if !out.ok() {
            if out.stdout.contains("is not installed") || out.stderr.contains("is not installed") {
                return Ok(None);
            }
            return Err(InstallError::Command(format!(
                "rpm -q {name} failed ({}):\n{}",
                out.status(),
                cmd::indent(&out.text())
            )));
        }
        Ok(out.stdout.lines().find_map(PackageInfo::parse))
    }

    /// Installed packages whose name starts with `prefix` (e.g. every `tomcat*`).
    pub fn installed_matching(&self, pattern: &str) -> Result<Vec<PackageInfo>, InstallError> {
        let out = self.run(&["-qa", "--qf", QF, pattern], None)?;
        Ok(out.stdout.lines().filter_map(PackageInfo::parse).collect())
    }

    /// What a package file holds.
    pub fn file_info(&self, file: &Path) -> Result<PackageInfo, InstallError> {
        let out = self.run(&["-qp", "--qf", QF], Some(file))?;
        let info = if out.ok() {
            out.stdout.lines().find_map(PackageInfo::parse)
        } else {
            None
        };
        info.ok_or_else(|| {
            InstallError::Package(format!(
                "{} is not a readable RPM package ({}):\n{}\nDownload cmx-kms-server-rpm.tar.gz again and extract it; nothing was changed",
                file.display(),
                out.status(),
                cmd::indent(&out.text())
            ))
        })
    }

    fn change(
        &self,
        args: &[&str],
        file: Option<&Path>,
        what: &str,
    ) -> Result<Output, InstallError> {
        let mut a: Vec<&str> = args.to_vec();
        if self.nodeps {
            a.push("--nodeps");
        }
        let out = self.run(&a, file)?;
        if out.ok() {
            Ok(out)
        } else {
            Err(InstallError::Command(format!(
                "{what} failed ({}):\n{}",
                out.status(),
                cmd::indent(&out.text())
            )))
        }
    }

    /// `rpm -Uvh FILE`: install, or upgrade the installed version.
    pub fn upgrade(&self, file: &Path) -> Result<Output, InstallError> {
        self.change(
            &["-Uvh"],
            Some(file),
            &format!("rpm -Uvh {}", file.display()),
        )
    }

    /// `rpm -Uvh --oldpackage --replacepkgs FILE`: go back to an earlier version.
    pub fn downgrade(&self, file: &Path) -> Result<Output, InstallError> {
        self.change(
            &["-Uvh", "--oldpackage", "--replacepkgs"],
            Some(file),
            &format!("rpm -Uvh --oldpackage {}", file.display()),
        )
    }

    /// `rpm -e NAME...`.
    pub fn erase(&self, names: &[&str]) -> Result<Output, InstallError> {
        let mut args = vec!["-e"];
        args.extend_from_slice(names);
        self.change(&args, None, &format!("rpm -e {}", names.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpm_version_order() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0", "1.0.1", Less),
            ("2.0", "10", Less),
            ("1.10", "1.9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0~rc1", "1.0~rc2", Less),
            ("001", "1", Equal),
            ("1.a", "1.1", Less),
            ("24.2.2", "0.1.0", Greater),
        ] {
            assert_eq!(vercmp(a, b), o, "{a} vs {b}");
            assert_eq!(vercmp(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn parses_query_lines() {
        let p = PackageInfo::parse("cmx-kms-server\t1\t0.1.0\t2\tx86_64\n");
        assert_eq!(
            p,
            Some(PackageInfo {
                name: "cmx-kms-server".into(),
                epoch: 1,
                version: "0.1.0".into(),
                release: "2".into(),
                arch: "x86_64".into()
            })
        );
        let p = PackageInfo::parse("tomcat\t(none)\t7.0.76\t16.el7\tnoarch");
        assert_eq!(p.map(|p| p.epoch), Some(0));
    }
}
