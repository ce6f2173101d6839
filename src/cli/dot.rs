//! `treecast cover --dot`: the tree, its revoked leaves and the cover's subsets as Graphviz DOT,
//! built as a petgraph graph.

use petgraph::Graph;
use petgraph::dot::{Config, Dot};
use treecast_keytree::{Cover, NodeIndex, RevocationSet, Subset};

/// The tallest tree `--dot` draws: 2^8 leaves are already a wide picture.
pub(crate) const MAX_DOT_HEIGHT: u8 = 8;

/// A node of the drawing.
#[derive(Debug)]
struct Node {
    label: String,
    /// The subset whose top node this is (`u`, or the subtree of CS), by index.
    top_of: Option<usize>,
    /// The subset whose `v` this is (SD), by index.
    removed_from: Option<usize>,
    /// For a leaf: the subset that holds it, or `None` when it is revoked.
    held_by: Option<Option<usize>>,
}

/// The colours of subsets, in turn (a colour-blind-safe palette).
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999",
];

/// DOT for the whole tree of `revoked`'s height: leaves coloured by the subset that holds them,
/// revoked leaves black, each subset's top node outlined in its colour (bold), and for Subset
/// Difference its `v` outlined dashed.
pub(crate) fn cover_dot(cover: &Cover, revoked: &RevocationSet) -> anyhow::Result<String> {
    let height = revoked.height();
    if height.get() > MAX_DOT_HEIGHT {
        anyhow::bail!(
            "--dot draws trees of height up to {MAX_DOT_HEIGHT}, not {}",
            height.get()
        );
    }
    let mut graph: Graph<Node, ()> = Graph::new();
    let mut index = Vec::new();
    for n in 1..=height.node_count() {
        let node = NodeIndex::new(n, height)?;
        let is_leaf = node.depth() == height.get();
        let holder = |leaf: NodeIndex| cover.subsets().iter().position(|s| s.contains(leaf));
        let label = match node.first_leaf(height) {
            Some(first) if is_leaf => format!("{first}"),
            _ => String::new(),
        };
        let top_of = cover.subsets().iter().position(|s| s.top() == node);
        let removed_from = cover
            .subsets()
            .iter()
            .position(|s| matches!(s, Subset::Difference { v, .. } if *v == node));
        let id = graph.add_node(Node {
            label,
            top_of,
            removed_from,
            held_by: is_leaf.then(|| holder(node)),
        });
        index.push(id);
        if let Some(parent) = node.parent() {
            let p = usize::try_from(parent.get() - 1)?;
            if let Some(&pid) = index.get(p) {
                graph.add_edge(pid, id, ());
            }
        }
    }
    let color = |i: usize| PALETTE.get(i % PALETTE.len()).copied().unwrap_or("gray");
    let node_attributes = |_, (_, n): (petgraph::graph::NodeIndex, &Node)| {
        let mut a = vec![format!("label=\"{}\"", n.label)];
        let fill = match n.held_by {
            Some(None) => {
                a.push("fontcolor=white".into());
                Some("black".to_owned())
            }
            Some(Some(i)) => Some(format!("\"{}\"", color(i))),
            None => None,
        };
        let dashed = n.top_of.is_none() && n.removed_from.is_some();
        let style = match (fill.is_some(), dashed) {
            (true, true) => Some("\"dashed,filled\""),
            (true, false) => Some("filled"),
            (false, true) => Some("dashed"),
            (false, false) => None,
        };
        if let Some(style) = style {
            a.push(format!("style={style}"));
        }
        if let Some(fill) = fill {
            a.push(format!("fillcolor={fill}"));
        }
        if let Some(i) = n.top_of.or(n.removed_from) {
            a.push(format!("color=\"{}\"", color(i)));
            a.push(format!("penwidth={}", if dashed { 3 } else { 4 }));
        }
        a.join(", ")
    };
    let edge_attributes =
        |_, _: petgraph::graph::EdgeReference<'_, ()>| String::from("arrowhead=none");
    let dot = Dot::with_attr_getters(
        &graph,
        &[Config::EdgeNoLabel, Config::NodeNoLabel],
        &edge_attributes,
        &node_attributes,
    );
    let body = format!("{dot:?}");
    // Graphviz defaults: small round nodes, top-down.
    Ok(body.replacen(
        "digraph {",
        &format!(
            "digraph {{\n    label=\"{} cover of {} leaves, {} revoked: {} subsets\"\n    node [shape=circle, width=0.3, fixedsize=true, fontsize=9]",
            cover.scheme(),
            height.leaf_count(),
            revoked.len(),
            cover.len()
        ),
        1,
    ))
}
