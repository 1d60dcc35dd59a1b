//! The translator from Cedar's policy syntax tree (`pst`) to the fast path's expression
//! tree; `None` wherever a rule uses anything outside the translated subset.

use cedar_policy::pst;

use super::{CmpOp, Condition, Like, LongField, StrField, Symbols, B, E, L, S};

/// A translated expression with its static type.
enum T {
    B(B),
    L(L),
    S(S),
    E(E),
    LongSet(Vec<i64>),
    StrSet(Vec<Box<str>>),
    EntSet(Vec<E>),
}

fn entity_type_name(ty: &pst::EntityType) -> Box<str> {
    ty.to_string().into_boxed_str()
}

fn entity_lit(uid: &pst::EntityUID) -> E {
    E::Lit(Box::new((entity_type_name(&uid.ty), uid.eid.as_str().into())))
}

fn ent_eq(a: E, b: E) -> B {
    B::EntEq(Box::new((a, b)))
}

fn is_type(e: E, ty: &pst::EntityType) -> B {
    B::Is(Box::new((e, entity_type_name(ty))))
}

enum ScopeKind<'a> {
    Any,
    Eq(&'a pst::EntityUID),
    In(&'a pst::EntityUID),
    Is(&'a pst::EntityType),
    IsIn(&'a pst::EntityType, &'a pst::EntityUID),
}

/// A scope constraint on principal or resource as a boolean (no hierarchy: `in` is `==`).
fn scope(var: E, c: ScopeKind<'_>) -> B {
    match c {
        ScopeKind::Any => B::Lit(true),
        ScopeKind::Eq(uid) | ScopeKind::In(uid) => ent_eq(var, entity_lit(uid)),
        ScopeKind::Is(ty) => is_type(var, ty),
        ScopeKind::IsIn(ty, uid) => B::And(Box::new((is_type(var.clone(), ty), ent_eq(var, entity_lit(uid))))),
    }
}

fn principal_scope(c: &pst::PrincipalConstraint) -> Option<ScopeKind<'_>> {
    use pst::{EntityOrSlot::Entity as Ent, PrincipalConstraint as P};
    Some(match c {
        P::Any => ScopeKind::Any,
        P::Eq(Ent(u)) => ScopeKind::Eq(u),
        P::In(Ent(u)) => ScopeKind::In(u),
        P::Is(t) => ScopeKind::Is(t),
        P::IsIn(t, Ent(u)) => ScopeKind::IsIn(t, u),
        _ => return None,
    })
}

fn resource_scope(c: &pst::ResourceConstraint) -> Option<ScopeKind<'_>> {
    use pst::{EntityOrSlot::Entity as Ent, ResourceConstraint as R};
    Some(match c {
        R::Any => ScopeKind::Any,
        R::Eq(Ent(u)) => ScopeKind::Eq(u),
        R::In(Ent(u)) => ScopeKind::In(u),
        R::Is(t) => ScopeKind::Is(t),
        R::IsIn(t, Ent(u)) => ScopeKind::IsIn(t, u),
        _ => return None,
    })
}

/// Translate a rule's condition into its conjuncts; `None` when it uses anything outside
/// the subset. The action scope is not part of it: slicing already guarantees it holds.
pub(in crate::policy) fn compile_condition(body: &pst::Template, symbols: &mut Symbols) -> Option<Condition> {
    let mut parts = Vec::new();
    let principal = scope(E::Principal, principal_scope(&body.principal)?);
    let resource = scope(E::Resource, resource_scope(&body.resource)?);
    for part in [principal, resource] {
        if !matches!(part, B::Lit(true)) {
            push_conjuncts(&mut parts, part);
        }
    }
    let mut tr = Translator { symbols };
    for clause in body.clauses() {
        match clause {
            pst::Clause::When(e) => push_conjuncts(&mut parts, as_bool(tr.translate(e)?)?),
            pst::Clause::Unless(e) => parts.push(B::Not(Box::new(as_bool(tr.translate(e)?)?))),
        }
    }
    Some(Condition(parts))
}

/// `a && (b && c)` and `(a && b) && c` become `[a, b, c]`: the same left-to-right,
/// short-circuit evaluation with fewer indirections.
fn push_conjuncts(parts: &mut Vec<B>, b: B) {
    match b {
        B::And(ab) => {
            let (l, r) = *ab;
            push_conjuncts(parts, l);
            push_conjuncts(parts, r);
        }
        other => parts.push(other),
    }
}

fn as_bool(t: T) -> Option<B> {
    match t {
        T::B(b) => Some(b),
        _ => None,
    }
}

fn as_long(t: T) -> Option<L> {
    match t {
        T::L(l) => Some(l),
        _ => None,
    }
}

struct Translator<'a> {
    symbols: &'a mut Symbols,
}

impl Translator<'_> {
    fn translate(&mut self, e: &pst::Expr) -> Option<T> {
        use pst::{BinaryOp as Op, Expr as X, Literal as Lit, UnaryOp as U, Var};
        Some(match e {
            X::Literal(Lit::Bool(b)) => T::B(B::Lit(*b)),
            X::Literal(Lit::Long(n)) => T::L(L::Lit(*n)),
            X::Literal(Lit::String(s)) => T::S(S::Lit(s.as_str().into())),
            X::Literal(Lit::EntityUID(uid)) => T::E(entity_lit(uid)),
            X::Var(Var::Principal) => T::E(E::Principal),
            X::Var(Var::Resource) => T::E(E::Resource),
            X::Var(Var::Action) => T::E(E::Action),
            X::GetAttr { expr, attr } => match (&**expr, attr.as_str()) {
                (X::Var(Var::Context), "amount") => T::L(L::Field(LongField::Amount)),
                (X::Var(Var::Context), "currency") => T::S(S::Field(StrField::Currency)),
                (X::Var(Var::Principal), "owner") => T::S(S::Field(StrField::Owner)),
                (X::Var(Var::Principal), "trust") => T::L(L::Field(LongField::AgentTrust)),
                (X::Var(Var::Resource), "risk") => T::S(S::Field(StrField::Risk)),
                (X::Var(Var::Resource), "trust") => T::L(L::Field(LongField::CounterpartyTrust)),
                _ => return None,
            },
            X::UnaryOp { op: U::Not, expr } => T::B(B::Not(Box::new(as_bool(self.translate(expr)?)?))),
            X::UnaryOp { op: U::Neg, expr } => T::L(L::Neg(Box::new(as_long(self.translate(expr)?)?))),
            X::BinaryOp { op, left, right } => {
                let (l, r) = (self.translate(left)?, self.translate(right)?);
                let longs = |l: T, r: T| Some(Box::new((as_long(l)?, as_long(r)?)));
                let bools = |l: T, r: T| Some(Box::new((as_bool(l)?, as_bool(r)?)));
                match op {
                    Op::And => T::B(B::And(bools(l, r)?)),
                    Op::Or => T::B(B::Or(bools(l, r)?)),
                    Op::Eq => T::B(self.equality(l, r)?),
                    Op::NotEq => T::B(B::Not(Box::new(self.equality(l, r)?))),
                    Op::Less => T::B(long_cmp(CmpOp::Lt, *longs(l, r)?)),
                    Op::LessEq => T::B(long_cmp(CmpOp::Le, *longs(l, r)?)),
                    Op::Greater => T::B(long_cmp(CmpOp::Gt, *longs(l, r)?)),
                    Op::GreaterEq => T::B(long_cmp(CmpOp::Ge, *longs(l, r)?)),
                    Op::Add => T::L(L::Add(longs(l, r)?)),
                    Op::Sub => T::L(L::Sub(longs(l, r)?)),
                    Op::Mul => T::L(L::Mul(longs(l, r)?)),
                    Op::In => match (l, r) {
                        (T::E(a), T::E(b)) => T::B(ent_eq(a, b)),
                        (T::E(a), T::EntSet(set)) => T::B(B::EntIn(Box::new((a, set.into_boxed_slice())))),
                        _ => return None,
                    },
                    Op::Contains => match (l, r) {
                        (T::LongSet(set), T::L(x)) => T::B(B::LongIn(Box::new((x, set.into_boxed_slice())))),
                        (T::StrSet(set), T::S(x)) => T::B(self.str_in(x, set)),
                        (T::EntSet(set), T::E(x)) => T::B(B::EntIn(Box::new((x, set.into_boxed_slice())))),
                        _ => return None,
                    },
                    _ => return None,
                }
            }
            X::Like { expr, pattern } => match self.translate(expr)? {
                T::S(s) => T::B(B::Like(Box::new((s, Like::new(pattern))))),
                _ => return None,
            },
            X::Is { expr, entity_type, in_expr } => {
                let T::E(target) = self.translate(expr)? else {
                    return None;
                };
                let is = is_type(target.clone(), entity_type);
                match in_expr {
                    None => T::B(is),
                    Some(in_expr) => {
                        let within = match self.translate(in_expr)? {
                            T::E(b) => ent_eq(target, b),
                            T::EntSet(set) => B::EntIn(Box::new((target, set.into_boxed_slice()))),
                            _ => return None,
                        };
                        T::B(B::And(Box::new((is, within))))
                    }
                }
            }
            X::IfThenElse { cond, then_expr, else_expr } => {
                let c = as_bool(self.translate(cond)?)?;
                match (self.translate(then_expr)?, self.translate(else_expr)?) {
                    (T::B(t), T::B(e)) => T::B(B::If(Box::new((c, t, e)))),
                    (T::L(t), T::L(e)) => T::L(L::If(Box::new((c, t, e)))),
                    (T::S(t), T::S(e)) => T::S(S::If(Box::new((c, t, e)))),
                    _ => return None,
                }
            }
            X::Set(elems) => literal_set(elems)?,
            _ => return None,
        })
    }

    /// `==` on two operands of the same type. `fact == "literal"` becomes a symbol test;
    /// sound because evaluating a fact or a literal can neither fail nor have effects, so
    /// operand order does not matter.
    fn equality(&mut self, l: T, r: T) -> Option<B> {
        Some(match (l, r) {
            (T::B(a), T::B(b)) => B::BoolEq(Box::new((a, b))),
            (T::L(a), T::L(b)) => long_cmp(CmpOp::Eq, (a, b)),
            (T::S(S::Field(f)), T::S(S::Lit(s))) | (T::S(S::Lit(s)), T::S(S::Field(f))) => {
                B::FieldSymEq(f, self.symbols.intern(&s))
            }
            (T::S(a), T::S(b)) => B::StrEq(Box::new((a, b))),
            (T::E(a), T::E(b)) => ent_eq(a, b),
            _ => return None,
        })
    }

    /// `[literals].contains(x)`: a bitmask test when `x` is a fact and the symbols fit.
    fn str_in(&mut self, x: S, set: Vec<Box<str>>) -> B {
        if let S::Field(f) = x {
            let mut mask = 0u64;
            let mut fits = true;
            for s in &set {
                let sym = self.symbols.intern(s);
                if sym < 64 {
                    mask |= 1 << sym;
                } else {
                    fits = false;
                }
            }
            if fits {
                return B::FieldSymIn(f, mask);
            }
        }
        B::StrIn(Box::new((x, set.into_boxed_slice())))
    }
}

/// `a op b` on longs, as `fact op literal` when possible (same soundness argument as
/// [`Translator::equality`]).
fn long_cmp(op: CmpOp, (a, b): (L, L)) -> B {
    match (a, b) {
        (L::Field(f), L::Lit(n)) => B::FieldCmp(op, f, n),
        (L::Lit(n), L::Field(f)) => B::FieldCmp(op.swapped(), f, n),
        (a, b) => B::Cmp(op, Box::new((a, b))),
    }
}

/// A set literal whose elements are all literals of one type (Cedar sets of expressions
/// can error or mix types; those stay with Cedar).
fn literal_set(elems: &[std::sync::Arc<pst::Expr>]) -> Option<T> {
    use pst::{Expr as X, Literal as Lit};
    let first = elems.first()?;
    Some(match &**first {
        X::Literal(Lit::Long(_)) => T::LongSet(
            elems
                .iter()
                .map(|e| match &**e {
                    X::Literal(Lit::Long(n)) => Some(*n),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        X::Literal(Lit::String(_)) => T::StrSet(
            elems
                .iter()
                .map(|e| match &**e {
                    X::Literal(Lit::String(s)) => Some(s.as_str().into()),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        X::Literal(Lit::EntityUID(_)) => T::EntSet(
            elems
                .iter()
                .map(|e| match &**e {
                    X::Literal(Lit::EntityUID(u)) => Some(entity_lit(u)),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}
