//! A workflow as a graph: soundness analysis (reachability, dead ends, traps)
//! and drawings as Mermaid `stateDiagram-v2` or Graphviz DOT.

use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{Bfs, Reversed};

use crate::model::Workflow;

/// A workflow's states as nodes and its transitions as edges (labelled by action).
pub struct WorkflowGraph<'w> {
    workflow: &'w Workflow,
    graph: StableDiGraph<&'w str, &'w str>,
    nodes: Vec<(&'w str, NodeIndex)>,
}

/// What is wrong with a workflow's shape.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Soundness {
    /// States the initial state cannot reach.
    pub unreachable: Vec<String>,
    /// Non-final states without any transition out.
    pub dead_ends: Vec<String>,
    /// Non-final states with a way out, but none that ever reaches a final state.
    pub traps: Vec<String>,
    /// The workflow has no final state at all.
    pub no_final: bool,
}

impl<'w> WorkflowGraph<'w> {
    /// Builds the graph; transitions naming unknown states are left out (the checker reports them).
    pub fn new(workflow: &'w Workflow) -> Self {
        let mut graph = StableDiGraph::new();
        let nodes: Vec<(&str, NodeIndex)> = workflow
            .states
            .keys()
            .map(|name| (name.as_str(), graph.add_node(name.as_str())))
            .collect();
        let index = |name: &str| nodes.iter().find(|(n, _)| *n == name).map(|(_, i)| *i);
        for t in &workflow.transitions {
            let Some(to) = t.to.as_deref().and_then(index) else {
                continue;
            };
            for from in t.from.iter().flat_map(|f| f.names()) {
                let starts: Vec<NodeIndex> = if from == "*" {
                    workflow
                        .states
                        .iter()
                        .filter(|(_, s)| !s.is_final)
                        .filter_map(|(n, _)| index(n))
                        .collect()
                } else {
                    index(from).into_iter().collect()
                };
                for start in starts {
                    graph.add_edge(start, to, t.action.as_str());
                }
            }
        }
        WorkflowGraph {
            workflow,
            graph,
            nodes,
        }
    }

    fn is_final(&self, name: &str) -> bool {
        self.workflow.states.get(name).is_some_and(|s| s.is_final)
    }

    /// Finds unreachable states, dead ends and traps.
    pub fn soundness(&self) -> Soundness {
        let mut report = Soundness::default();
        let Some(&(_, start)) = self
            .nodes
            .iter()
            .find(|(n, _)| self.workflow.states[*n].is_initial)
        else {
            return report;
        };
        let mut reached = std::collections::HashSet::new();
        let mut bfs = Bfs::new(&self.graph, start);
        while let Some(n) = bfs.next(&self.graph) {
            reached.insert(n);
        }
        let finals: Vec<NodeIndex> = self
            .nodes
            .iter()
            .filter(|(n, _)| self.is_final(n))
            .map(|(_, i)| *i)
            .collect();
        report.no_final = finals.is_empty();
        // Everything that can reach a final state: one search backwards from all finals.
        let reversed = Reversed(&self.graph);
        let mut finishing = std::collections::HashSet::new();
        for &f in &finals {
            let mut bfs = Bfs::new(reversed, f);
            while let Some(n) = bfs.next(reversed) {
                finishing.insert(n);
            }
        }
        for &(name, index) in &self.nodes {
            if !reached.contains(&index) {
                report.unreachable.push(name.to_owned());
                continue;
            }
            if self.is_final(name) || report.no_final {
                continue;
            }
            let exits = self
                .graph
                .neighbors_directed(index, Direction::Outgoing)
                .any(|n| n != index);
            if !exits {
                report.dead_ends.push(name.to_owned());
            } else if !finishing.contains(&index) {
                report.traps.push(name.to_owned());
            }
        }
        report
    }

    /// Mermaid `stateDiagram-v2` text.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        for &(name, index) in &self.nodes {
            let state = &self.workflow.states[name];
            if let Some(label) = &state.label {
                out.push_str(&format!("    {name} : {}\n", label.text("en")));
            }
            if state.is_initial {
                out.push_str(&format!("    [*] --> {name}\n"));
            }
            for edge in self.graph.edges_directed(index, Direction::Outgoing) {
                use petgraph::visit::EdgeRef;
                let to = self.graph[edge.target()];
                out.push_str(&format!("    {name} --> {to} : {}\n", edge.weight()));
            }
            if state.is_final {
                out.push_str(&format!("    {name} --> [*]\n"));
            }
        }
        out
    }

    /// Graphviz DOT text.
    pub fn dot(&self) -> String {
        use petgraph::visit::{EdgeRef, IntoEdgeReferences};
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = String::from(
            "digraph workflow {\n    rankdir=LR;\n    node [shape=box, style=rounded];\n",
        );
        for &(name, _) in &self.nodes {
            let state = &self.workflow.states[name];
            let label = state.label.as_ref().map_or(name, |l| l.text("en"));
            let shape = if state.is_final {
                ", peripheries=2"
            } else {
                ""
            };
            let bold = if state.is_initial { ", penwidth=2" } else { "" };
            out.push_str(&format!(
                "    {} [label={}{shape}{bold}];\n",
                quote(name),
                quote(label)
            ));
        }
        for edge in (&self.graph).edge_references() {
            out.push_str(&format!(
                "    {} -> {} [label={}];\n",
                quote(self.graph[edge.source()]),
                quote(self.graph[edge.target()]),
                quote(edge.weight())
            ));
        }
        out.push_str("}\n");
        out
    }
}
