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
    // An empty PGPASSWORD is no password, as for libpq: the passfile is read.
    if let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
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
                .all(|(field, want)| field.matches(want));
            matched.then(|| Zeroizing::new(password.text.to_string()))
        })
}

/// A field of a passfile line, unescaped.
struct Field {
    text: Zeroizing<String>,
    /// The field is `*` as written (not `\*`): it matches anything.
    wildcard: bool,
}

impl Field {
    fn matches(&self, want: &str) -> bool {
        self.wildcard || self.text.as_str() == want
    }
}

/// A line's five fields, split at unescaped `:`, with `\:` and `\\` unescaped; as libpq
/// does, the password ends at the first unescaped `:` after it (the rest is ignored). A line
/// of fewer than five fields yields fewer.
fn fields(line: &str) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut text = Zeroizing::new(String::new());
    let mut escaped_any = false;
    let mut chars = line.chars();
    let mut finish = |text: &mut Zeroizing<String>, escaped: bool| {
        let wildcard = !escaped && text.as_str() == "*";
        fields.push(Field {
            text: std::mem::replace(text, Zeroizing::new(String::new())),
            wildcard,
        });
    };
    while let Some(c) = chars.next() {
        match c {
            ':' => {
                finish(&mut text, escaped_any);
                escaped_any = false;
            }
            '\\' => match chars.next() {
                Some(next) => {
                    text.push(next);
                    escaped_any = true;
                }
                None => break,
            },
            c => text.push(c),
        }
    }
    finish(&mut text, escaped_any);
    fields.truncate(5);
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
        // The password ends at an unescaped `:`, as for libpq.
        assert_eq!(
            found(["db.example", "5432", "treecast", "treecast"]).as_deref(),
            Some("s3cr:et")
        );
        // `\*` is a star, not a wildcard.
        assert_eq!(
            lookup("\\*:5432:d:u:p\n", ["h", "5432", "d", "u"]).map(|p| p.to_string()),
            None
        );
        assert_eq!(
            lookup("\\*:5432:d:u:p\n", ["*", "5432", "d", "u"])
                .map(|p| p.to_string())
                .as_deref(),
            Some("p")
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
