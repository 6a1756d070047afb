//! Deciding whether two parsed answers mean the same thing.
//!
//! The order of tests matters for speed: canonical structure first (cheap, and the only way to
//! compare things we cannot evaluate, like `\sum` with a symbolic bound), then exact rational
//! arithmetic, then evaluation at pseudo-random points for symbolic identities.

use super::eval::{Point, approx, exact, is_constant};
use super::lex::{Const, RelOp};
use super::number::Rational;
use super::parse::{Bracket, Node};
use super::{Precision, VerifyConfig};

/// Points used to test a symbolic identity, and how many must be defined on both sides.
const POINTS: u64 = 6;
const MIN_DEFINED_POINTS: usize = 3;
const MAX_COLLECTION: usize = 64;
const MAX_NESTING: usize = 16;

pub(crate) fn answers_equal(gold: &Node, candidate: &Node, cfg: &VerifyConfig) -> bool {
    // Math-Verify's `allow_set_relation_comp`: an inequality may answer an interval only when
    // allowed; an interval always answers an inequality.
    if !cfg.allow_set_relation_comp && is_set_like(gold) && is_inequality(candidate) {
        return false;
    }
    equal(&normalize(gold), &normalize(candidate), 0, cfg)
}

fn is_set_like(node: &Node) -> bool {
    match node {
        Node::Tuple { open, close, .. } => (*open, *close) != (Bracket::Round, Bracket::Round),
        Node::Union(_) | Node::Set(_) => true,
        Node::Relation { ops, sides } => {
            matches!(ops.as_slice(), [RelOp::In]) && sides.first().is_some_and(is_lone_symbol)
        }
        _ => false,
    }
}

fn is_inequality(node: &Node) -> bool {
    matches!(node, Node::Relation { ops, .. }
        if ops.iter().any(|op| matches!(op, RelOp::Lt | RelOp::Le | RelOp::Gt | RelOp::Ge)))
}

// ---------------------------------------------------------------------------------------------
// Normalisation: one spelling per meaning before comparing.

fn normalize(node: &Node) -> Node {
    match node {
        Node::Relation { ops, sides } => normalize_relation(ops, sides),
        Node::List(items) => Node::List(items.iter().map(normalize).collect()),
        Node::Set(items) => Node::Set(items.iter().map(normalize).collect()),
        Node::Union(items) => Node::Union(items.iter().map(normalize).collect()),
        Node::Tuple { open, close, items } => Node::Tuple {
            open: *open,
            close: *close,
            items: items.iter().map(normalize).collect(),
        },
        Node::Mul(a, b) => match (normalize(a), normalize(b)) {
            (Node::Matrix(x), Node::Matrix(y)) => {
                matrix_product(&x, &y).unwrap_or_else(|| node.clone())
            }
            _ => expand_plus_minus(node),
        },
        Node::Add(a, b) => match (normalize(a), normalize(b)) {
            (Node::Matrix(x), Node::Matrix(y)) => {
                matrix_sum(&x, &y).unwrap_or_else(|| node.clone())
            }
            _ => expand_plus_minus(node),
        },
        Node::Matrix(_) | Node::Text(_) | Node::EmptySet => node.clone(),
        _ => expand_plus_minus(node),
    }
}

fn normalize_relation(ops: &[RelOp], sides: &[Node]) -> Node {
    // "x = 1/3 ≈ 0.33": the approximation adds nothing; keep what precedes it.
    let cut = ops
        .iter()
        .position(|op| *op == RelOp::Approx)
        .unwrap_or(ops.len());
    // "x ≈ 11" names a value like "x = 11".
    let approx_only = [RelOp::Eq];
    let (ops, sides) = if cut == 0 && ops.len() == 1 && sides.first().is_some_and(is_name) {
        (&approx_only[..], sides)
    } else {
        (&ops[..cut], &sides[..=cut.min(sides.len() - 1)])
    };
    let sides: Vec<Node> = sides.iter().map(normalize).collect();
    match ops {
        [] => sides.into_iter().next().unwrap_or(Node::EmptySet),
        // "x ∈ [a, b]" is the set itself.
        [RelOp::In] if is_lone_symbol(&sides[0]) => {
            sides.into_iter().nth(1).unwrap_or(Node::EmptySet)
        }
        // "5 + 3 = 8" as an answer is a worked computation: its value is the last member.
        _ if ops.iter().all(|op| *op == RelOp::Eq) && sides.iter().all(is_constant) => {
            sides.into_iter().last().unwrap_or(Node::EmptySet)
        }
        // "x = 5+5+1 = 11": the first and last members carry the claim.
        _ if ops.len() > 1 && ops.iter().all(|op| *op == RelOp::Eq) => {
            let last = sides.last().cloned().unwrap_or(Node::EmptySet);
            let first = sides.into_iter().next().unwrap_or(Node::EmptySet);
            Node::Relation {
                ops: vec![RelOp::Eq],
                sides: vec![first, last],
            }
        }
        _ => inequality_as_interval(ops, &sides).unwrap_or(Node::Relation {
            ops: ops.to_vec(),
            sides,
        }),
    }
}

/// `x ≥ 5` → `[5, ∞)`, `-2 ≤ x ≤ 7` → `[-2, 7]`, `5 ≥ x` → `(-∞, 5]`.
fn inequality_as_interval(ops: &[RelOp], sides: &[Node]) -> Option<Node> {
    let infinity = || Node::Const(Const::Infinity);
    let closed = |op: RelOp| {
        if matches!(op, RelOp::Le | RelOp::Ge) {
            Bracket::Square
        } else {
            Bracket::Round
        }
    };
    let interval = |lo: Node, lo_op: RelOp, hi: Node, hi_op: RelOp| {
        let open = if matches!(lo, Node::Neg(ref x) if **x == infinity()) {
            Bracket::Round
        } else {
            closed(lo_op)
        };
        let close = if hi == infinity() {
            Bracket::Round
        } else {
            closed(hi_op)
        };
        Node::Tuple {
            open,
            close,
            items: vec![lo, hi],
        }
    };
    let neg_inf = || Node::Neg(Box::new(infinity()));
    let is_less = |op: RelOp| matches!(op, RelOp::Lt | RelOp::Le);
    let is_greater = |op: RelOp| matches!(op, RelOp::Gt | RelOp::Ge);
    // "-x > -1" and "2x ≤ 6" first become "x < 1" and "x ≤ 3".
    let isolated = match (ops, sides) {
        ([op], [left, right]) => isolate_symbol(*op, left, right)
            .or_else(|| isolate_symbol(flip(*op), right, left))
            .map(|(op, symbol, bound)| (vec![op], vec![symbol, bound])),
        _ => None,
    };
    let (ops, sides) = match &isolated {
        Some((ops, sides)) => (ops.as_slice(), sides.as_slice()),
        None => (ops, sides),
    };
    match (ops, sides) {
        ([op], [left, right]) if is_lone_symbol(left) && is_constant(right) => {
            Some(if is_less(*op) {
                interval(neg_inf(), *op, right.clone(), *op)
            } else if is_greater(*op) {
                interval(right.clone(), *op, infinity(), *op)
            } else {
                return None;
            })
        }
        ([op], [left, right]) if is_lone_symbol(right) && is_constant(left) => {
            Some(if is_less(*op) {
                interval(left.clone(), *op, infinity(), *op)
            } else if is_greater(*op) {
                interval(neg_inf(), *op, left.clone(), *op)
            } else {
                return None;
            })
        }
        // "1 ≤ |z| ≤ 3/2": z ∈ [-3/2, -1] ∪ [1, 3/2].
        ([a, b], [lo, Node::Abs(inner), hi])
            if is_lone_symbol(inner)
                && is_constant(lo)
                && is_constant(hi)
                && approx(lo, &mut Point::new(0)) >= 0.0
                && is_less(*a)
                && is_less(*b) =>
        {
            let negate = |n: &Node| Node::Neg(Box::new(n.clone()));
            Some(Node::Union(vec![
                interval(negate(hi), *b, negate(lo), *a),
                interval(lo.clone(), *a, hi.clone(), *b),
            ]))
        }
        // "0 < f(x) < 1" reads like "0 < x < 1": the answer is the range (0, 1).
        ([a, b], [lo, middle, hi])
            if (is_lone_symbol(middle) || matches!(middle, Node::Call(..)))
                && is_constant(lo)
                && is_constant(hi) =>
        {
            if is_less(*a) && is_less(*b) {
                Some(interval(lo.clone(), *a, hi.clone(), *b))
            } else if is_greater(*a) && is_greater(*b) {
                Some(interval(hi.clone(), *b, lo.clone(), *a))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `a > b` read from the other side: `b < a`.
fn flip(op: RelOp) -> RelOp {
    match op {
        RelOp::Lt => RelOp::Gt,
        RelOp::Le => RelOp::Ge,
        RelOp::Gt => RelOp::Lt,
        RelOp::Ge => RelOp::Le,
        other => other,
    }
}

/// `k·x ⋈ c` with constants `k ≠ 0` and `c` as `x ⋈' c/k` (the relation flipped when `k < 0`).
fn isolate_symbol(op: RelOp, left: &Node, right: &Node) -> Option<(RelOp, Node, Node)> {
    if !is_constant(right) || !matches!(op, RelOp::Lt | RelOp::Le | RelOp::Gt | RelOp::Ge) {
        return None;
    }
    let (coefficient, symbol) = match left {
        Node::Neg(x) if is_lone_symbol(x) => (Node::int(-1), (**x).clone()),
        Node::Mul(k, x) if is_lone_symbol(x) && is_constant(k) => ((**k).clone(), (**x).clone()),
        _ => return None,
    };
    let k = approx(&coefficient, &mut Point::new(0));
    if !k.is_finite() || k == 0.0 {
        return None;
    }
    let bound = Node::Div(Box::new(right.clone()), Box::new(coefficient));
    Some((if k < 0.0 { flip(op) } else { op }, symbol, bound))
}

fn is_lone_symbol(node: &Node) -> bool {
    matches!(node, Node::Sym(_) | Node::Indexed(..))
}

/// `3 ± 2√2` is the set {3 + 2√2, 3 - 2√2}. At most two signs are expanded.
fn expand_plus_minus(node: &Node) -> Node {
    let mut variants = vec![node.clone()];
    for _ in 0..2 {
        let mut next = Vec::new();
        for v in &variants {
            match (replace_plus_minus(v, true), replace_plus_minus(v, false)) {
                (Some(plus), Some(minus)) => {
                    next.push(plus);
                    next.push(minus);
                }
                _ => next.push(v.clone()),
            }
        }
        if next.len() == variants.len() {
            break;
        }
        variants = next;
    }
    if variants.len() == 1 {
        variants.pop().unwrap_or(Node::EmptySet)
    } else {
        Node::Set(variants)
    }
}

/// Replaces the first `±` with `+` or `-`; `None` when there is none.
fn replace_plus_minus(node: &Node, plus: bool) -> Option<Node> {
    let b = Box::new;
    let pair = |a: &Node, c: &Node, make: fn(Box<Node>, Box<Node>) -> Node| {
        if let Some(x) = replace_plus_minus(a, plus) {
            Some(make(b(x), b(c.clone())))
        } else {
            replace_plus_minus(c, plus).map(|y| make(b(a.clone()), b(y)))
        }
    };
    match node {
        Node::PlusMinus(left, right) => Some(match (left, plus) {
            (Some(l), true) => Node::Add(l.clone(), right.clone()),
            (Some(l), false) => Node::Sub(l.clone(), right.clone()),
            (None, true) => (**right).clone(),
            (None, false) => Node::Neg(right.clone()),
        }),
        Node::Add(x, y) => pair(x, y, Node::Add),
        Node::Sub(x, y) => pair(x, y, Node::Sub),
        Node::Mul(x, y) => pair(x, y, Node::Mul),
        Node::Div(x, y) => pair(x, y, Node::Div),
        Node::Pow(x, y) => pair(x, y, Node::Pow),
        Node::Neg(x) => replace_plus_minus(x, plus).map(|x| Node::Neg(b(x))),
        _ => None,
    }
}

/// Element-wise sum of two matrices of one shape.
fn matrix_sum(x: &[Vec<Node>], y: &[Vec<Node>]) -> Option<Node> {
    if x.len() != y.len() || x.iter().zip(y).any(|(r, s)| r.len() != s.len()) {
        return None;
    }
    Some(Node::Matrix(
        x.iter()
            .zip(y)
            .map(|(r, s)| {
                r.iter()
                    .zip(s)
                    .map(|(a, b)| Node::Add(Box::new(a.clone()), Box::new(b.clone())))
                    .collect()
            })
            .collect(),
    ))
}

fn matrix_product(x: &[Vec<Node>], y: &[Vec<Node>]) -> Option<Node> {
    let inner = x.first()?.len();
    if inner != y.len() || x.len() * y.first()?.len() * inner > 4096 {
        return None;
    }
    let rows =
        x.iter()
            .map(|row| {
                (0..y[0].len())
                    .map(|j| {
                        let terms = row.iter().zip(y).map(|(a, yrow)| {
                            Node::Mul(Box::new(a.clone()), Box::new(yrow[j].clone()))
                        });
                        terms
                            .reduce(|acc, t| Node::Add(Box::new(acc), Box::new(t)))
                            .unwrap_or(Node::int(0))
                    })
                    .collect()
            })
            .collect();
    Some(Node::Matrix(rows))
}

// ---------------------------------------------------------------------------------------------
// Comparison.

fn equal(a: &Node, b: &Node, depth: usize, cfg: &VerifyConfig) -> bool {
    if depth > MAX_NESTING {
        return false;
    }
    let depth = depth + 1;
    match (a, b) {
        (Node::Text(x), Node::Text(y)) => text_key(x) == text_key(y),
        (Node::Text(_), _) | (_, Node::Text(_)) => false,
        (Node::EmptySet, Node::EmptySet) => true,
        (Node::Matrix(x), Node::Matrix(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|(r, s)| {
                    r.len() == s.len() && r.iter().zip(s).all(|(p, q)| scalars_equal(p, q, cfg))
                })
        }
        (Node::Relation { ops: o1, sides: s1 }, Node::Relation { ops: o2, sides: s2 }) => {
            relations_equal(o1, s1, o2, s2, depth, cfg)
        }
        (Node::Relation { ops, sides }, other) | (other, Node::Relation { ops, sides }) => {
            // "x = 11" answers "11"; "a + 3z = 0" does not answer "0".
            assignment(ops, sides).is_some_and(|(_, value)| equal(value, other, depth, cfg))
        }
        _ => match (members(a), members(b)) {
            (Some(x), Some(y)) => collections_equal(&x, &y, depth, cfg),
            // "{5}" answers "5".
            (Some(x), None) => only_member(&x).is_some_and(|m| equal(m, b, depth, cfg)),
            (None, Some(y)) => only_member(&y).is_some_and(|m| equal(a, m, depth, cfg)),
            (None, None) => scalars_equal(a, b, cfg),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Set,
    Tuple,
    Union,
}

struct Members<'a> {
    kind: Kind,
    brackets: (Bracket, Bracket),
    items: &'a [Node],
}

fn members(node: &Node) -> Option<Members<'_>> {
    let round = (Bracket::Round, Bracket::Round);
    let (kind, brackets, items) = match node {
        Node::List(items) => (Kind::List, round, items),
        Node::Set(items) => (Kind::Set, round, items),
        Node::Union(items) => (Kind::Union, round, items),
        Node::Tuple { open, close, items } => (Kind::Tuple, (*open, *close), items),
        _ => return None,
    };
    Some(Members {
        kind,
        brackets,
        items,
    })
}

fn only_member<'a>(members: &Members<'a>) -> Option<&'a Node> {
    match members.items {
        [only] if members.kind != Kind::Tuple => Some(only),
        _ => None,
    }
}

fn collections_equal(x: &Members, y: &Members, depth: usize, cfg: &VerifyConfig) -> bool {
    use Kind::*;
    match (x.kind, y.kind) {
        // Tuples and intervals: order and brackets both matter, "(0,9)" is not "[0,9)".
        (Tuple, Tuple) => x.brackets == y.brackets && ordered_equal(x.items, y.items, depth, cfg),
        (Union, Union) => {
            ordered_equal(x.items, y.items, depth, cfg) || set_equal(x.items, y.items, depth, cfg)
        }
        // "x ≤ -3 or x ≥ 2" lists the pieces of a union.
        (Union, List) | (List, Union) => set_equal(x.items, y.items, depth, cfg),
        (Union, _) | (_, Union) => false,
        // Strict: a tuple equals a set only in the set's ascending order (Math-Verify compares
        // a sympy FiniteSet, which sorts): "(1, 3)" is "{1, 3}", "(3, 1)" is not.
        (Tuple, Set) if cfg.strict => ordered_equal(x.items, &ascending(y.items), depth, cfg),
        (Set, Tuple) if cfg.strict => ordered_equal(&ascending(x.items), y.items, depth, cfg),
        // An interval is not a list of its endpoints.
        (Tuple, _) if x.brackets != (Bracket::Round, Bracket::Round) => false,
        (_, Tuple) if y.brackets != (Bracket::Round, Bracket::Round) => false,
        // Everything else is a collection of answers whose order carries no meaning.
        _ => set_equal(x.items, y.items, depth, cfg),
    }
}

/// Numeric items in ascending order; anything that is not a number keeps its place at the end.
fn ascending(items: &[Node]) -> Vec<Node> {
    let mut keyed: Vec<(f64, &Node)> = items
        .iter()
        .map(|n| (approx(n, &mut Point::new(0)), n))
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    keyed.into_iter().map(|(_, n)| n.clone()).collect()
}

fn ordered_equal(xs: &[Node], ys: &[Node], depth: usize, cfg: &VerifyConfig) -> bool {
    xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| equal(x, y, depth, cfg))
}

/// Equal as sets: duplicates collapse, order is ignored.
fn set_equal(xs: &[Node], ys: &[Node], depth: usize, cfg: &VerifyConfig) -> bool {
    if xs.len() > MAX_COLLECTION || ys.len() > MAX_COLLECTION {
        return false;
    }
    let xs = distinct(xs, depth, cfg);
    let ys = distinct(ys, depth, cfg);
    if xs.len() != ys.len() {
        return false;
    }
    let mut used = vec![false; ys.len()];
    xs.iter().all(|x| {
        let found = ys
            .iter()
            .enumerate()
            .position(|(j, y)| !used[j] && equal(x, y, depth, cfg));
        found.inspect(|&j| used[j] = true).is_some()
    })
}

fn distinct<'a>(items: &'a [Node], depth: usize, cfg: &VerifyConfig) -> Vec<&'a Node> {
    let mut out: Vec<&Node> = Vec::with_capacity(items.len());
    for item in items {
        if !out.iter().any(|seen| equal(seen, item, depth, cfg)) {
            out.push(item);
        }
    }
    out
}

/// `(name, value)` when a relation only gives a name a value: `x = 5`, `5 = x`, `f(x) = 1`,
/// `(p, q, r) = (3, 2, 7)`, `\frac{NO}{BO} = …`.
fn assignment<'a>(ops: &[RelOp], sides: &'a [Node]) -> Option<(&'a Node, &'a Node)> {
    match (ops, sides) {
        ([RelOp::Eq], [lhs, rhs]) if is_name(lhs) => Some((lhs, rhs)),
        ([RelOp::Eq], [lhs, rhs]) if is_name(rhs) => Some((rhs, lhs)),
        _ => None,
    }
}

/// Built only from symbols: no numbers, sums or powers.
fn is_name(node: &Node) -> bool {
    match node {
        Node::Sym(_) | Node::Indexed(..) => true,
        Node::Call(_, args) => args
            .iter()
            .all(|a| matches!(a, Node::Sym(_) | Node::Num(_) | Node::Indexed(..))),
        Node::Abs(x) => is_name(x),
        Node::Mul(a, b) | Node::Div(a, b) => is_name(a) && is_name(b),
        Node::Tuple { items, .. } => items.iter().all(is_name),
        _ => false,
    }
}

fn relations_equal(
    o1: &[RelOp],
    s1: &[Node],
    o2: &[RelOp],
    s2: &[Node],
    depth: usize,
    cfg: &VerifyConfig,
) -> bool {
    if let (Some((n1, v1)), Some((n2, v2))) = (assignment(o1, s1), assignment(o2, s2)) {
        return names_compatible(n1, n2) && equal(v1, v2, depth, cfg);
    }
    match (o1, s1, o2, s2) {
        ([op1], [l1, r1], [op2], [l2, r2]) => {
            let (op1, l1, r1) = orient(*op1, l1, r1);
            let (op2, l2, r2) = orient(*op2, l2, r2);
            if op1 != op2 {
                return false;
            }
            let symmetric = matches!(op1, RelOp::Eq | RelOp::Ne);
            (equal(l1, l2, depth, cfg) && equal(r1, r2, depth, cfg))
                || (symmetric && equal(l1, r2, depth, cfg) && equal(r1, l2, depth, cfg))
                || proportional(l1, r1, l2, r2, !symmetric)
        }
        _ => {
            o1.len() == o2.len()
                && o1.iter().zip(o2).all(|(x, y)| x == y)
                && s1.iter().zip(s2).all(|(x, y)| equal(x, y, depth, cfg))
        }
    }
}

/// Two names may differ in their bound variables (`W(n)` and `W(x)`), but `a_3` is not `a_37`.
fn names_compatible(a: &Node, b: &Node) -> bool {
    if is_lone_symbol(a) && is_lone_symbol(b) {
        canonical(a) == canonical(b)
    } else {
        true
    }
}

/// `a > b` becomes `b < a`, so only `<`, `≤`, `=`, `≠` remain.
fn orient<'a>(op: RelOp, l: &'a Node, r: &'a Node) -> (RelOp, &'a Node, &'a Node) {
    match op {
        RelOp::Gt => (RelOp::Lt, r, l),
        RelOp::Ge => (RelOp::Le, r, l),
        _ => (op, l, r),
    }
}

/// `l1 ⋈ r1` and `l2 ⋈ r2` describe the same set when `l1 - r1 = k (l2 - r2)` for a constant
/// `k ≠ 0` (`k > 0` for inequalities): `2x + 4y - 3 = 0` is `y = -x/2 + 3/4`.
fn proportional(l1: &Node, r1: &Node, l2: &Node, r2: &Node, positive: bool) -> bool {
    let f = Node::Sub(Box::new(l1.clone()), Box::new(r1.clone()));
    let g = Node::Sub(Box::new(l2.clone()), Box::new(r2.clone()));
    if is_constant(&f) && is_constant(&g) {
        return false;
    }
    let mut ratio: Option<f64> = None;
    let mut defined = 0;
    for i in 0..POINTS {
        let (vf, vg) = (
            approx(&f, &mut Point::new(i)),
            approx(&g, &mut Point::new(i)),
        );
        if !vf.is_finite() || !vg.is_finite() || vg.abs() < 1e-12 {
            continue;
        }
        let k = vf / vg;
        match ratio {
            None => ratio = Some(k),
            Some(r) if close(k, r, 0.0) => {}
            Some(_) => return false,
        }
        defined += 1;
    }
    defined >= MIN_DEFINED_POINTS
        && ratio.is_some_and(|k| k.abs() > 1e-12 && (!positive || k > 0.0))
}

fn scalars_equal(a: &Node, b: &Node, cfg: &VerifyConfig) -> bool {
    // f(x) and f(y) name the same function (in Math-Verify only when not strict; see
    // DIFFERENCES.md).
    if let (Node::Call(f, xs), Node::Call(g, ys)) = (a, b)
        && f == g
        && xs.len() == ys.len()
        && xs.iter().chain(ys).all(|n| matches!(n, Node::Sym(_)))
    {
        return true;
    }
    // A gold "28%" is answered by "28", "28%" and "0.28". A bare gold "28" is answered by "28%"
    // when the number is written plainly, but a bare "40/9" is not "4 4/9%" (which is 40/900).
    match (a, b) {
        (Node::Percent(x), Node::Percent(y)) => values_equal(x, y, cfg),
        (Node::Percent(p), other) => {
            values_equal(p, other, cfg) || values_equal(&percent_of(p), other, cfg)
        }
        (gold, Node::Percent(p)) => {
            (literal_key(p).is_some() && values_equal(gold, p, cfg))
                || values_equal(gold, &percent_of(p), cfg)
        }
        _ => values_equal(a, b, cfg),
    }
}

fn percent_of(x: &Node) -> Node {
    Node::Div(Box::new(x.clone()), Box::new(Node::int(100)))
}

fn values_equal(a: &Node, b: &Node, cfg: &VerifyConfig) -> bool {
    if let Precision::DecimalPlaces(places) = cfg.precision
        && (decimal_literal(a).is_some() || decimal_literal(b).is_some())
    {
        // Math-Verify's `float_rounding`: both sides rounded to that many decimal places.
        let value =
            |n: &Node| exact(n).map_or_else(|| approx(n, &mut Point::new(0)), |r| r.to_f64());
        let scale = 10f64.powi(places.min(300) as i32);
        let (x, y) = ((value(a) * scale).round(), (value(b) * scale).round());
        return x.is_finite() && x == y;
    }
    let tolerance = rounding_tolerance(a, b, cfg);
    if let (Some(x), Some(y)) = (exact(a), exact(b)) {
        return x == y || tolerance.is_some_and(|tol| within_exact(x, y, tol));
    }
    // Numbers too large for i128 compare digit by digit.
    if let (Some((sx, kx)), Some((sy, ky))) = (literal_key(a), literal_key(b)) {
        return sx == sy && kx == ky;
    }
    if canonical(a) == canonical(b) {
        return true;
    }
    numerically_equal(a, b, tolerance.map(|(_, tol)| tol))
}

/// Sign and digits of a plain (possibly negated) literal.
fn literal_key(node: &Node) -> Option<(bool, &str)> {
    match node {
        Node::Num(lit) => Some((false, &lit.key)),
        Node::Neg(x) => match &**x {
            Node::Num(lit) => Some((true, &lit.key)),
            _ => None,
        },
        _ => None,
    }
}

/// A decimal literal (possibly negated), such as `0.3333` or `-2.5`.
fn decimal_literal(node: &Node) -> Option<&super::number::Literal> {
    let lit = match node {
        Node::Num(lit) => lit,
        Node::Neg(x) => match &**x {
            Node::Num(lit) => lit,
            _ => return None,
        },
        _ => return None,
    };
    lit.decimals.is_some().then_some(lit)
}

/// How far apart a decimal and the value it stands for may be: (decimal places, half-unit in
/// the last place). A decimal approximates an exact value when it gives at least
/// `Precision::SignificantDigits` significant digits correctly rounded (`0.3333` for 1/3, not
/// `0.333`); a gold decimal is compared at its own precision (`0.33` answered by `0.3333`).
fn rounding_tolerance(a: &Node, b: &Node, cfg: &VerifyConfig) -> Option<(u32, f64)> {
    let Precision::SignificantDigits(min_significant) = cfg.precision else {
        return None;
    };
    let rounded = |node: &Node| {
        decimal_literal(node)
            .filter(|lit| lit.significant >= min_significant)
            .and_then(|lit| lit.decimals)
    };
    let places = match (decimal_literal(a), decimal_literal(b)) {
        // Both decimals: the gold's precision when the answer gives more digits.
        (Some(gold), Some(answer)) => match (gold.decimals, answer.decimals) {
            (Some(g), Some(p)) if p > g => g,
            _ => rounded(a).or(rounded(b))?,
        },
        _ => rounded(a).or(rounded(b))?,
    };
    Some((places, 0.5 * 10f64.powi(-(places.min(300) as i32))))
}

fn within_exact(x: Rational, y: Rational, (places, tol): (u32, f64)) -> bool {
    let exact_check = || -> Option<bool> {
        let diff = x.sub(y)?.abs();
        let scale = Rational::int(10i128.checked_pow(places)?.checked_mul(2)?)?;
        Some(diff.mul(scale)?.cmp_value(Rational::ONE)? != std::cmp::Ordering::Greater)
    };
    exact_check().unwrap_or_else(|| (x.to_f64() - y.to_f64()).abs() <= tol * (1.0 + 1e-9))
}

fn close(x: f64, y: f64, tol: f64) -> bool {
    if x == y || x.is_infinite() || y.is_infinite() {
        return x == y;
    }
    let scale = x.abs().max(y.abs());
    (x - y).abs() <= (1e-9 * scale).max(1e-12).max(tol)
}

/// Equal at every test point where both sides are defined, and defined at enough of them.
fn numerically_equal(a: &Node, b: &Node, tol: Option<f64>) -> bool {
    let constant = is_constant(a) && is_constant(b);
    let (points, needed) = if constant {
        (1, 1)
    } else {
        (POINTS, MIN_DEFINED_POINTS)
    };
    let mut defined = 0;
    for i in 0..points {
        let (x, y) = (approx(a, &mut Point::new(i)), approx(b, &mut Point::new(i)));
        match (x.is_nan(), y.is_nan()) {
            (true, true) => continue,
            (true, false) | (false, true) => return false,
            (false, false) => {}
        }
        if !close(x, y, tol.unwrap_or(0.0) * (1.0 + 1e-9)) {
            return false;
        }
        defined += 1;
    }
    defined >= needed
}

// ---------------------------------------------------------------------------------------------
// Canonical text: sums and products with their operands sorted, so `F_k F_{n-k-1}` and
// `F_{n-k-1} F_k` read the same even where neither can be evaluated.

pub(crate) fn canonical(node: &Node) -> String {
    let mut out = String::new();
    write_canonical(node, &mut out);
    out
}

fn write_canonical(node: &Node, out: &mut String) {
    let sub = |n: &Node| canonical(n);
    match node {
        Node::Num(lit) => out.push_str(&lit.key),
        Node::Sym(name) => out.push_str(name),
        Node::Indexed(name, index) => {
            out.push_str(name);
            out.push_str("_{");
            write_canonical(index, out);
            out.push('}');
        }
        Node::Const(c) => out.push_str(match c {
            Const::Pi => "\\pi",
            Const::E => "\\e",
            Const::Infinity => "\\infty",
        }),
        Node::Add(..) | Node::Sub(..) | Node::Neg(_) => {
            let mut terms = Vec::new();
            collect_terms(node, true, &mut terms);
            terms.sort();
            out.push('(');
            out.push_str(&terms.join(""));
            out.push(')');
        }
        Node::Mul(..) => {
            let mut factors = Vec::new();
            collect_factors(node, &mut factors);
            factors.sort();
            out.push('[');
            out.push_str(&factors.join("*"));
            out.push(']');
        }
        Node::Div(a, b) => out.push_str(&format!("({})/({})", sub(a), sub(b))),
        Node::Pow(a, b) => out.push_str(&format!("({})^({})", sub(a), sub(b))),
        Node::Root(n, x) => out.push_str(&format!("root({},{})", sub(n), sub(x))),
        Node::LogBase(base, x) => out.push_str(&format!("log_({})({})", sub(base), sub(x))),
        Node::Func(f, x) => out.push_str(&format!("{f:?}({})", sub(x))),
        Node::Call(name, args) => out.push_str(&format!("{name}({})", join(args))),
        Node::Abs(x) => out.push_str(&format!("|{}|", sub(x))),
        Node::Factorial(x) => out.push_str(&format!("({})!", sub(x))),
        Node::Binomial(n, k) => out.push_str(&format!("binom({},{})", sub(n), sub(k))),
        Node::Percent(x) => out.push_str(&format!("({})%", sub(x))),
        Node::PlusMinus(a, b) => out.push_str(&format!(
            "({}±{})",
            a.as_deref().map(sub).unwrap_or_default(),
            sub(b)
        )),
        Node::BigOp {
            op,
            var,
            lo,
            hi,
            body,
        } => out.push_str(&format!(
            "{op:?}_{{{var}={}}}^{{{}}}{}",
            sub(lo),
            sub(hi),
            sub(body)
        )),
        Node::Tuple { open, close, items } => {
            out.push_str(&format!("{open:?}{}{close:?}", join(items)))
        }
        Node::Set(items) => out.push_str(&format!("{{{}}}", join(items))),
        Node::Union(items) | Node::List(items) => out.push_str(&format!("<{}>", join(items))),
        Node::Matrix(rows) => {
            for row in rows {
                out.push_str(&format!("[{}]", join(row)));
            }
        }
        Node::Relation { ops, sides } => {
            for (i, side) in sides.iter().enumerate() {
                if i > 0 {
                    out.push_str(&format!("{:?}", ops[i - 1]));
                }
                write_canonical(side, out);
            }
        }
        Node::Text(t) => out.push_str(&text_key(t)),
        Node::EmptySet => out.push('∅'),
    }
}

fn join(items: &[Node]) -> String {
    items.iter().map(canonical).collect::<Vec<_>>().join(",")
}

fn collect_terms(node: &Node, positive: bool, out: &mut Vec<String>) {
    match node {
        Node::Add(a, b) => {
            collect_terms(a, positive, out);
            collect_terms(b, positive, out);
        }
        Node::Sub(a, b) => {
            collect_terms(a, positive, out);
            collect_terms(b, !positive, out);
        }
        Node::Neg(x) => collect_terms(x, !positive, out),
        other => out.push(format!(
            "{}{}",
            if positive { '+' } else { '-' },
            canonical(other)
        )),
    }
}

fn collect_factors(node: &Node, out: &mut Vec<String>) {
    match node {
        Node::Mul(a, b) => {
            collect_factors(a, out);
            collect_factors(b, out);
        }
        other => out.push(canonical(other)),
    }
}

pub(crate) fn text_key(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '(' | ')' | '.' | '"'))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::parse::parse_tokens;

    fn same(a: &str, b: &str) -> bool {
        answers_equal(
            &parse_tokens(a).expect("gold parses"),
            &parse_tokens(b).expect("candidate parses"),
            &VerifyConfig::default(),
        )
    }

    #[test]
    fn numbers() {
        assert!(same("1/12", "0.0833333333333333"));
        assert!(!same("1/3", "0.333"));
        assert!(!same("31.12", "31.16"));
        assert!(same("77.2", "77.20"));
        assert!(same("4.123105625617661", "\\sqrt{17}"));
        assert!(same("7/25", "28\\%"));
        assert!(same("75", "75\\%"));
        assert!(!same("0.28", "28"));
        let big = "9".repeat(60);
        assert!(same(&big, &big));
        assert!(!same(&big, &format!("{}8", "9".repeat(59))));
    }

    #[test]
    fn expressions_and_relations() {
        assert!(same("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}"));
        assert!(!same("x+2n+1", "x+1"));
        assert!(same("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}"));
        assert!(same("34x+45y-20z+100=0", "-34x-45y+20z-100=0"));
        assert!(same("x \\leq 5", "5 \\geq x"));
        assert!(!same("x \\geq 5", "x \\leq 5"));
        assert!(same("-2 \\le x \\le 7", "x \\in [-2,7]"));
        assert!(same("x = 11", "x = 5+5+1 = 7 = 11"));
        assert!(same("k=1", "1"));
        assert!(!same("a+3z=0", "0"));
        assert!(same(
            "F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}",
            "F_n = \\sum_{k=0}^{n-1} F_{n-k-1} F_k"
        ));
    }

    #[test]
    fn collections() {
        assert!(same("(1,3)", "{1,3}"));
        assert!(!same("(0,9)", "[0,9)"));
        assert!(same("\\pm 2021", "{-2021, 2021}"));
        assert!(same("(1,2),(2,1)", "(2,1),(1,2),(2,1)"));
        assert!(same(
            "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}",
            "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix} \\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}"
        ));
        assert!(!same("n=2, 3, 4", "n=1, 2, 3"));
    }
}
