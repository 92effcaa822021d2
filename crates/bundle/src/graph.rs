//! The step dependency graph: build from `needs`, find cycles (with their path),
//! order, levels, the critical path, and render as DOT or Mermaid. Pure: no I/O.

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::fmt::Write as _;

/// A directed acyclic graph of steps; edges go from a dependency to its dependent.
#[derive(Debug, Clone)]
pub struct Dag {
    graph: DiGraph<usize, ()>,
    /// Steps in a valid execution order.
    order: Vec<usize>,
    /// `levels[i]` is the length of the longest dependency chain ending at step `i`.
    levels: Vec<usize>,
}

/// A dependency cycle, as step indices in order; the first step is repeated at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<usize>);

impl Dag {
    /// Builds the graph from each step's dependencies (`needs[i]` = steps `i` needs).
    /// On cycles, returns every cycle found (one path per strongly connected group).
    pub fn build(needs: &[Vec<usize>]) -> Result<Dag, Vec<Cycle>> {
        let mut graph = DiGraph::with_capacity(needs.len(), needs.iter().map(Vec::len).sum());
        let nodes: Vec<NodeIndex> = (0..needs.len()).map(|i| graph.add_node(i)).collect();
        for (step, deps) in needs.iter().enumerate() {
            for &dep in deps {
                if dep < nodes.len() {
                    graph.add_edge(nodes[dep], nodes[step], ());
                }
            }
        }
        // Kahn's algorithm, always taking the earliest-declared ready step, so the
        // order is deterministic and reads like the file.
        let mut indegree: Vec<usize> = needs
            .iter()
            .map(|d| d.iter().filter(|&&x| x < needs.len()).count())
            .collect();
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..needs.len())
            .filter(|&i| indegree[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut order = Vec::with_capacity(needs.len());
        while let Some(std::cmp::Reverse(step)) = ready.pop() {
            order.push(step);
            for next in graph.neighbors(nodes[step]) {
                let j = graph[next];
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(std::cmp::Reverse(j));
                }
            }
        }
        if order.len() < needs.len() {
            return Err(find_cycles(&graph, needs));
        }
        let mut levels = vec![0usize; needs.len()];
        for &step in &order {
            levels[step] = needs[step]
                .iter()
                .filter(|&&d| d < levels.len())
                .map(|&d| levels[d] + 1)
                .max()
                .unwrap_or(0);
        }
        Ok(Dag {
            graph,
            order,
            levels,
        })
    }

    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn level(&self, step: usize) -> usize {
        self.levels[step]
    }

    /// Steps grouped by level: every step of a level can run once the previous levels ran.
    pub fn levels(&self) -> Vec<Vec<usize>> {
        let depth = self.levels.iter().copied().max().map_or(0, |m| m + 1);
        let mut out = vec![Vec::new(); depth];
        for &step in &self.order {
            out[self.levels[step]].push(step);
        }
        for level in &mut out {
            level.sort_unstable();
        }
        out
    }

    /// The longest chain of dependencies, weighted by `cost(step)` (e.g. timeouts).
    pub fn critical_path(&self, cost: impl Fn(usize) -> u64) -> (u64, Vec<usize>) {
        let n = self.levels.len();
        let mut best = vec![0u64; n];
        let mut prev = vec![usize::MAX; n];
        for &step in &self.order {
            let node = NodeIndex::new(step);
            let mut start = 0;
            for dep in self
                .graph
                .neighbors_directed(node, petgraph::Direction::Incoming)
            {
                let d = self.graph[dep];
                if best[d] > start || prev[step] == usize::MAX && best[d] == start && start > 0 {
                    start = best[d];
                    prev[step] = d;
                }
            }
            best[step] = start + cost(step);
        }
        let Some(mut end) = (0..n).max_by_key(|&i| best[i]) else {
            return (0, Vec::new());
        };
        let total = best[end];
        let mut path = vec![end];
        while prev[end] != usize::MAX {
            end = prev[end];
            path.push(end);
        }
        path.reverse();
        (total, path)
    }

    /// Whether `ancestor` must finish before `step` starts (directly or transitively).
    pub fn precedes(&self, ancestor: usize, step: usize) -> bool {
        petgraph::algo::has_path_connecting(
            &self.graph,
            NodeIndex::new(ancestor),
            NodeIndex::new(step),
            None,
        ) && ancestor != step
    }
}

fn find_cycles(graph: &DiGraph<usize, ()>, needs: &[Vec<usize>]) -> Vec<Cycle> {
    let mut cycles = Vec::new();
    for scc in tarjan_scc(graph) {
        let first = graph[scc[0]];
        if scc.len() == 1 && !needs[first].contains(&first) {
            continue;
        }
        let members: std::collections::HashSet<usize> = scc.iter().map(|n| graph[*n]).collect();
        let start = *members.iter().min().unwrap_or(&first);
        // Walk forwards (dependency -> dependent) inside the group until we return.
        let mut path = vec![start];
        let mut seen = std::collections::HashSet::from([start]);
        let mut current = start;
        loop {
            let next = graph
                .neighbors(NodeIndex::new(current))
                .map(|n| graph[n])
                .filter(|s| members.contains(s))
                .min_by_key(|s| (*s != start, seen.contains(s), *s));
            match next {
                Some(s) if s == start => {
                    path.push(start);
                    break;
                }
                Some(s) if !seen.contains(&s) => {
                    seen.insert(s);
                    path.push(s);
                    current = s;
                }
                _ => {
                    path.push(start);
                    break;
                }
            }
        }
        cycles.push(Cycle(path));
    }
    cycles.sort_by_key(|c| c.0.first().copied());
    cycles
}

/// How to label a step in a rendering.
#[derive(Debug, Clone)]
pub struct NodeLabel {
    pub id: String,
    pub detail: String,
}

fn quote_dot(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Renders the graph as Graphviz DOT.
pub fn to_dot(name: &str, labels: &[NodeLabel], needs: &[Vec<usize>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", quote_dot(name));
    let _ = writeln!(out, "  rankdir=LR;\n  node [shape=box, style=rounded];");
    for l in labels {
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\"];",
            quote_dot(&l.id),
            quote_dot(&l.id),
            quote_dot(&l.detail)
        );
    }
    for (step, deps) in needs.iter().enumerate() {
        for &d in deps {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\";",
                quote_dot(&labels[d].id),
                quote_dot(&labels[step].id)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Renders the graph as a Mermaid flowchart.
pub fn to_mermaid(labels: &[NodeLabel], needs: &[Vec<usize>]) -> String {
    let mut out = String::from("flowchart LR\n");
    let node_id = |i: usize| format!("s{i}");
    for (i, l) in labels.iter().enumerate() {
        let text = format!("{}<br/>{}", l.id, l.detail).replace('"', "#quot;");
        let _ = writeln!(out, "  {}[\"{}\"]", node_id(i), text);
    }
    for (step, deps) in needs.iter().enumerate() {
        for &d in deps {
            let _ = writeln!(out, "  {} --> {}", node_id(d), node_id(step));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_levels_and_critical_path() {
        // 0 -> 1 -> 3, 0 -> 2 -> 3
        let needs = vec![vec![], vec![0], vec![0], vec![1, 2]];
        let dag = Dag::build(&needs).unwrap();
        assert_eq!(dag.levels(), vec![vec![0], vec![1, 2], vec![3]]);
        let costs = [1, 10, 2, 1];
        let (total, path) = dag.critical_path(|s| costs[s]);
        assert_eq!(total, 12);
        assert_eq!(path, vec![0, 1, 3]);
        assert!(dag.precedes(0, 3));
        assert!(!dag.precedes(1, 2));
    }

    #[test]
    fn reports_cycle_paths() {
        // a(0) needs c(2), b(1) needs a, c needs b: a -> b -> c -> a
        let needs = vec![vec![2], vec![0], vec![1], vec![]];
        let cycles = Dag::build(&needs).unwrap_err();
        assert_eq!(cycles, vec![Cycle(vec![0, 1, 2, 0])]);
        let selfloop = Dag::build(&[vec![0]]).unwrap_err();
        assert_eq!(selfloop, vec![Cycle(vec![0, 0])]);
    }

    #[test]
    fn renders_dot_and_mermaid() {
        let labels = vec![
            NodeLabel {
                id: "a".into(),
                detail: "core/log".into(),
            },
            NodeLabel {
                id: "b".into(),
                detail: "core/set".into(),
            },
        ];
        let needs = vec![vec![], vec![0]];
        assert!(to_dot("rb", &labels, &needs).contains("\"a\" -> \"b\";"));
        assert!(to_mermaid(&labels, &needs).contains("s0 --> s1"));
    }
}
