//! Where a registry lives, as named on a command line: `memory`, `sqlite:PATH` or a PostgreSQL
//! URL; and opening it as a boxed registry, the store chosen at run time.

use std::path::PathBuf;

use treecast_keytree::TreeHeight;
use treecast_protocol::Error;

use super::{MemoryRegistry, Registry};

/// Where the registry lives: `memory`, `sqlite:PATH` or a PostgreSQL URL.
#[derive(Clone, Eq, PartialEq)]
#[non_exhaustive]
pub enum StoreSpec {
    /// In memory (the default).
    Memory,
    /// A SQLite file, created if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL database: `postgres://…` or `postgresql://…` (the schema is created if
    /// missing).
    Postgres(String),
}

impl StoreSpec {
    /// `memory`, `sqlite:PATH`, or the PostgreSQL URL with any password replaced by `***`.
    pub fn name(&self) -> String {
        match self {
            Self::Memory => "memory".into(),
            Self::Sqlite(p) => format!("sqlite:{}", p.display()),
            Self::Postgres(url) => redact(url),
        }
    }
}

/// A URL with its passwords replaced by `***`: the user part's (`user:password@`) and a
/// `password=` query parameter's (which `tokio-postgres` reads too).
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{name}:***@{host}")
        }
        _ => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl core::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.name())
    }
}

impl core::str::FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "memory" {
            return Ok(Self::Memory);
        }
        if let Some(path) = s.strip_prefix("sqlite:")
            && !path.is_empty()
        {
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(s.into()));
        }
        Err(format!(
            "`{}` is not a store: use `memory`, `sqlite:PATH` or `postgres://…`",
            redact(s)
        ))
    }
}

impl StoreSpec {
    /// Opens (creating if missing) the registry for a tree of height `height`.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store cannot be opened, holds something else, is for another
    /// height, or its store was not compiled in (the `sqlite` and `postgres` features).
    pub fn open(&self, height: TreeHeight) -> Result<Box<dyn Registry>, Error> {
        self.open_with_password(height, None)
    }

    /// As [`StoreSpec::open`], with a PostgreSQL password given apart from the URL (read from a
    /// file, say). Without one, and without a password in the URL, libpq's conventions apply
    /// (`PGPASSWORD`, then the passfile: see [`super::PostgresRegistry::open_with_password`]).
    /// The other stores ignore it.
    ///
    /// # Errors
    /// As [`StoreSpec::open`].
    pub fn open_with_password(
        &self,
        height: TreeHeight,
        password: Option<&str>,
    ) -> Result<Box<dyn Registry>, Error> {
        let _ = password;
        match self {
            Self::Memory => Ok(Box::new(MemoryRegistry::new(height))),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(path) => Ok(Box::new(super::SqliteRegistry::open(path, height)?)),
            #[cfg(feature = "postgres")]
            Self::Postgres(url) => Ok(Box::new(super::PostgresRegistry::open_with_password(
                url, height, password,
            )?)),
            #[allow(
                unreachable_patterns,
                reason = "reached when a store is not compiled in"
            )]
            _ => Err(Error::Storage(format!(
                "{}: this treecast was built without that store",
                self.name()
            ))),
        }
    }
}

#[cfg(test)]
mod redaction {
    use super::redact;

    #[test]
    fn every_password_of_a_url_is_redacted() {
        assert_eq!(redact("postgres://u:s3cret@db/x"), "postgres://u:***@db/x");
        assert_eq!(
            redact("postgres://u@db/x?sslmode=disable&password=s3cret&application_name=a"),
            "postgres://u@db/x?sslmode=disable&password=***&application_name=a"
        );
        assert_eq!(
            redact("postgresql://u:a@b@db:5432/x?PASSWORD=c"),
            "postgresql://u:***@db:5432/x?PASSWORD=***"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
    }
}
