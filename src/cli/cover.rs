//! `treecast cover`: the cover of the non-revoked leaves.

use clap::Args;
use serde::Serialize;
use treecast_keytree::{Cover, Scheme, Subset, TreeHeight};

use super::TreeArgs;
use super::input::read_revoked;

#[derive(Args, Debug)]
pub(crate) struct CoverArgs {
    #[command(flatten)]
    tree: TreeArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// List every subset.
    #[arg(long)]
    list: bool,
    /// Print the tree, its revoked leaves and the cover as Graphviz DOT (heights up to 8);
    /// render with `dot -Tsvg`.
    #[arg(long, conflicts_with_all = ["json", "list"])]
    dot: bool,
}

#[derive(Serialize)]
struct CoverReport {
    scheme: &'static str,
    height: u8,
    revoked: usize,
    subsets: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<Vec<SubsetReport>>,
}

/// One subset: `u` is its top node, `v` the node taken out (Subset Difference only), and
/// `leaves` how many leaves it holds.
#[derive(Serialize)]
pub(crate) struct SubsetReport {
    u: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<u64>,
    leaves: u64,
}

impl SubsetReport {
    pub(crate) fn new(subset: &Subset, height: TreeHeight) -> Self {
        let (u, v) = match *subset {
            Subset::Complete(n) => (n.get(), None),
            Subset::Difference { u, v } => (u.get(), Some(v.get())),
            _ => (0, None),
        };
        Self {
            u,
            v,
            leaves: subset.leaf_count(height),
        }
    }

    pub(crate) fn line(&self) -> String {
        match self.v {
            None => format!("node {:>12}  leaves {}", self.u, self.leaves),
            Some(v) => format!("u {:>12}  v {:>12}  leaves {}", self.u, v, self.leaves),
        }
    }
}

pub(crate) fn run(args: &CoverArgs) -> anyhow::Result<()> {
    let height = args.tree.height;
    let revoked = read_revoked(args.tree.revoked.as_deref(), height)?;
    let scheme = Scheme::from(args.tree.scheme);
    let cover = Cover::compute(scheme, &revoked)?;
    if args.dot {
        print!("{}", super::dot::cover_dot(&cover, &revoked)?);
        return Ok(());
    }
    let list = args.list.then(|| {
        cover
            .subsets()
            .iter()
            .map(|s| SubsetReport::new(s, height))
            .collect::<Vec<_>>()
    });
    let report = CoverReport {
        scheme: scheme.name(),
        height: height.get(),
        revoked: revoked.len(),
        subsets: cover.len(),
        list,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "scheme {}  height {}  revoked {}  subsets {}",
        report.scheme, report.height, report.revoked, report.subsets
    );
    for s in report.list.iter().flatten() {
        println!("{}", s.line());
    }
    Ok(())
}
