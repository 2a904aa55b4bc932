//! `vzpkg`: the OS templates on this appliance (OpenVZ 7's template tool,
//! reduced to what an appliance has: templates come as images built by
//! `image template NAME`, not from package repositories).

use proto::{Request, Response, TemplateInfo};

pub const USAGE: &str = "\
usage: vzpkg list [-q]
       vzpkg install FILE.erofs...      (alias: localinstall)

  list     the OS templates present: name, version, size, how many VE
           configs use it, and its description (-q: names only)
  install  verifies a template image (FILE.conf beside it gives its SIZE and
           SHA256), copies it to /vz/template/cache and makes it the
           template's current version: VEs use it from their next start;
           a truncated or corrupt file is refused and nothing changes";

/// Human size as vzlist prints disk figures.
fn size(b: u64) -> String {
    const M: f64 = 1024.0 * 1024.0;
    if b as f64 >= 1024.0 * M {
        format!("{:.1}G", b as f64 / (1024.0 * M))
    } else {
        format!("{:.1}M", b as f64 / M)
    }
}

/// The `vzpkg list` table.
pub fn render(list: &[TemplateInfo], quiet: bool) -> String {
    let mut s = String::new();
    if quiet {
        for t in list {
            s.push_str(&t.name);
            s.push('\n');
        }
        return s;
    }
    s.push_str(&format!(
        "{:<24} {:<22} {:>8} {:>4}  {}\n",
        "TEMPLATE", "VERSION", "SIZE", "VES", "DESCRIPTION"
    ));
    for t in list {
        let desc = if t.kind.as_str() == "builtin" {
            format!("{} (built in)", t.description)
        } else {
            t.description.to_string()
        };
        s.push_str(&format!(
            "{:<24} {:<22} {:>8} {:>4}  {}\n",
            t.name,
            t.version,
            size(t.size),
            t.ves,
            desc
        ));
    }
    s
}

/// Runs `vzpkg` with `args`; its exit code.
pub fn run(args: &[String]) -> i32 {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["list"] | ["list", "-q"] => match super::call(&Request::Templates) {
            Ok(Response::Templates { list }) => {
                print!("{}", render(&list, a.len() == 2));
                0
            }
            Ok(other) => {
                eprintln!("vzpkg: unexpected reply from vmmgr: {other:?}");
                super::NO_VMMGR
            }
            Err(e) => {
                eprintln!("vzpkg: {e}");
                super::NO_VMMGR
            }
        },
        ["install" | "localinstall", files @ ..] if !files.is_empty() => {
            let mut code = 0;
            for f in files {
                let path = match std::path::absolute(f) {
                    Ok(p) => p.display().to_string(),
                    Err(e) => {
                        eprintln!("vzpkg: {f}: {e}");
                        return 21;
                    }
                };
                let Ok(text) = proto::Text::try_from(path.as_str()) else {
                    eprintln!("vzpkg: {f}: path longer than 256 bytes");
                    return 21;
                };
                match super::call(&Request::TemplateInstall { path: text }) {
                    Ok(Response::VeDone {
                        code: c, message, ..
                    }) => {
                        if c == 0 {
                            println!("{message}");
                        } else {
                            eprintln!("vzpkg: {message}");
                            code = i32::from(c);
                        }
                    }
                    Ok(other) => {
                        eprintln!("vzpkg: unexpected reply from vmmgr: {other:?}");
                        return super::NO_VMMGR;
                    }
                    Err(e) => {
                        eprintln!("vzpkg: {e}");
                        return super::NO_VMMGR;
                    }
                }
            }
            code
        }
        _ => {
            eprintln!("vzpkg: bad arguments {a:?}\n{USAGE}");
            21
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let t = TemplateInfo {
            name: "debian-12-web".try_into().expect("n"),
            version: "20261128-36e8372b0cd4".try_into().expect("v"),
            size: 100 * 1024 * 1024,
            kind: "image".try_into().expect("k"),
            description: "web".try_into().expect("d"),
            ves: 3,
        };
        let out = render(std::slice::from_ref(&t), false);
        let lines: Vec<_> = out.lines().collect();
        assert!(lines[0].starts_with("TEMPLATE "), "{out}");
        assert_eq!(
            lines[1],
            "debian-12-web            20261128-36e8372b0cd4    100.0M    3  web"
        );
        assert_eq!(render(&[t], true), "debian-12-web\n");
    }
}
