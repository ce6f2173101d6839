//! The journal of `store workload --journal`: one line per operation, written once its change
//! committed. `store check --journal` proves every line is in the registry.
//!
//! Lines: `user U`, `content C`, `client C`, `license L`, `move SOURCE_LICENSE NEW_LICENSE
//! CERTIFICATE`, `revoke CLIENT EPOCH`.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use treecast::license::registry::LicenseState;
use treecast::license::{
    CertificateId, ChargeKind, ClientId, ContentId, LicenseId, Registry, UserId,
};

/// The journal's operations that the registry does not hold, at most `limit` of them. A last
/// line cut short by a kill (no newline) is not an acknowledged operation and is skipped.
pub(crate) fn check(
    registry: &dyn Registry,
    path: &Path,
    limit: usize,
) -> anyhow::Result<Vec<String>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the journal {}", path.display()))?;
    let mut missing = Vec::new();
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || !line.ends_with('\n') {
            break;
        }
        n += 1;
        let text = line.trim_end();
        let ok =
            held(registry, text).with_context(|| format!("{}:{n}: `{text}`", path.display()))?;
        if !ok && missing.len() < limit {
            missing.push(format!("journal line {n} is not in the registry: {text}"));
        }
    }
    Ok(missing)
}

/// Whether the registry holds the operation of one journal line (a few lookups; a move reads
/// its user's rows, never a whole table).
fn held(r: &dyn Registry, line: &str) -> anyhow::Result<bool> {
    let mut words = line.split_whitespace();
    let kind = words.next().context("an empty line")?;
    let f: Vec<u64> = words
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("not a journal line")?;
    let arg = |i: usize| f.get(i).copied().context("a field is missing");
    Ok(match kind {
        "user" => r.has_user(UserId(arg(0)?))?,
        "client" => r.client(ClientId(arg(0)?))?.is_some(),
        "content" => r.content(ContentId(arg(0)?))?.is_some(),
        "license" => r.license(LicenseId(arg(0)?))?.is_some(),
        "move" => {
            let (source, new, cert) = (LicenseId(arg(0)?), LicenseId(arg(1)?), arg(2)?);
            let Some(arrived) = r.license(new)? else {
                return Ok(false);
            };
            let Some(rows) = r.user_rows(arrived.user)? else {
                return Ok(false);
            };
            let moved = rows
                .licenses
                .iter()
                .any(|l| l.id == source && l.state == LicenseState::Moved);
            let recorded = rows.history.iter().any(|h| {
                h.id == CertificateId(cert)
                    && h.source_license == source
                    && h.destination_license == new
            });
            let billed = rows
                .ledger
                .iter()
                .any(|e| e.reference == cert && e.kind == ChargeKind::Certificate);
            moved && arrived.origin == Some(CertificateId(cert)) && recorded && billed
        }
        "revoke" => {
            r.client(ClientId(arg(0)?))?.is_some_and(|c| c.revoked) && r.epoch()? >= arg(1)?
        }
        other => anyhow::bail!("unknown operation `{other}`"),
    })
}
