//! The PostgreSQL password by libpq's conventions, for a URL that holds none: `PGPASSWORD`, then
//! the passfile (`PGPASSFILE`, or `~/.pgpass`), whose lines are
//! `hostname:port:database:username:password`, `*` matching anything and `\` escaping `:` and
//! `\`. As libpq does, a passfile that its group or others can read is ignored (with a warning
//! on stderr), and a Unix-socket connection matches the host `localhost`.

use postgres::config::Host;
use zeroize::Zeroizing;

/// The longest passfile read.
const MAX_PASSFILE: u64 = 1 << 20;

/// The password for `config` from `PGPASSWORD` or the passfile, if either has one.
pub(super) fn password(config: &postgres::Config) -> Option<Zeroizing<String>> {
    if let Some(p) = std::env::var_os("PGPASSWORD") {
        return p.into_string().ok().map(Zeroizing::new);
    }
    let path = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    let text = read(&path)?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default();
    let database = config.get_dbname().unwrap_or(user);
    lookup(&text, [&host, &port, database, user])
}

/// The passfile's text, unless it is missing, too large or readable by others.
fn read(path: &std::path::Path) -> Option<Zeroizing<String>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "treecast: WARNING: the passfile {} has group or world access; it is ignored \
                 (chmod 600 it)",
                path.display()
            );
            return None;
        }
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_PASSFILE).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The password of the first line of `text` whose four fields match `wanted` (host, port,
/// database, user).
fn lookup(text: &str, wanted: [&str; 4]) -> Option<Zeroizing<String>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let fields = fields(line);
            let [host, port, database, user, password] = fields.as_slice() else {
                return None;
            };
            let matched = [host, port, database, user]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field.as_str() == "*" || field.as_str() == want);
            matched.then(|| Zeroizing::new(password.to_string()))
        })
}

/// A line's fields, split at unescaped `:`, with `\:` and `\\` unescaped. The password is the
/// rest of the line (a `:` in it need not be escaped).
fn fields(line: &str) -> Vec<Zeroizing<String>> {
    let mut fields = vec![Zeroizing::new(String::new())];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            ':' if fields.len() < 5 => {
                fields.push(Zeroizing::new(String::new()));
                continue;
            }
            '\\' => match chars.next() {
                Some(next) => next,
                None => break,
            },
            c => c,
        };
        if let Some(current) = fields.last_mut() {
            current.push(c);
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::lookup;

    #[test]
    fn a_passfile_line_matches_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    db.example:5432:other:treecast:wrong\n\
                    db.example:5432:treecast:treecast:s3cr\\:et:x\n\
                    *:*:*:*:fallback\n";
        let found = |w| lookup(text, w).map(|p| p.to_string());
        assert_eq!(
            found(["db.example", "5432", "treecast", "treecast"]).as_deref(),
            Some("s3cr:et:x")
        );
        assert_eq!(
            found(["other", "5432", "treecast", "treecast"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(
            lookup("a:b:c\n", ["a", "b", "c", "d"]).map(|p| p.to_string()),
            None
        );
    }
}
