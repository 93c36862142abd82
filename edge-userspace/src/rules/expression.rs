//! A compiled expression: parsed and type-checked once, evaluated per request.

use std::borrow::Cow;

use serde::Serialize;

use super::ast::{IndexKey, Node};
use super::context::{Ctx, Val};
use super::error::ExprError;
use super::eval::{CExpr, compile};
use super::parser::{parse, parse_characteristic};
use super::scheme::{ExprKind, Field, Type};

#[derive(Debug, Clone)]
pub struct Expression {
    source: String,
    ast: Node,
    compiled: CExpr,
    fields: Vec<(Field, Option<IndexKey>)>,
}

/// A field value as shown in traces.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FieldValue {
    pub field: String,
    pub value: serde_json::Value,
}

impl Expression {
    pub fn compile(source: &str, kind: ExprKind) -> Result<Self, ExprError> {
        let ast = parse(source, kind)?;
        Ok(Self::from_ast(source, ast))
    }

    /// A single value of any scalar type (rate-limit characteristics).
    pub fn compile_characteristic(source: &str) -> Result<Self, ExprError> {
        let (ast, _) = parse_characteristic(source)?;
        Ok(Self::from_ast(source, ast))
    }

    fn from_ast(source: &str, ast: Node) -> Self {
        let mut fields = Vec::new();
        ast.referenced(&mut fields);
        Expression {
            source: source.to_owned(),
            compiled: compile(&ast),
            ast,
            fields,
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The typed syntax tree (the reference for tests and tools).
    pub fn ast(&self) -> &Node {
        &self.ast
    }

    pub fn reads(&self, field: Field) -> bool {
        self.fields.iter().any(|(f, _)| *f == field)
    }

    /// Evaluates a filter.
    pub fn matches(&self, ctx: &Ctx<'_>) -> bool {
        self.compiled.test(ctx, None)
    }

    /// Evaluates a value expression (rewrite and redirect targets).
    pub fn value<'a, 'c: 'a>(&'a self, ctx: &Ctx<'c>) -> Cow<'a, [u8]> {
        self.compiled.eval(ctx, None).into_bytes()
    }

    /// Evaluates any scalar expression (rate-limit characteristics).
    pub(crate) fn eval<'a, 'c: 'a>(&'a self, ctx: &Ctx<'c>) -> Val<'a> {
        self.compiled.eval(ctx, None)
    }

    /// The values of every field the expression reads, for traces.
    pub fn field_values(&self, ctx: &Ctx<'_>) -> Vec<FieldValue> {
        self.fields
            .iter()
            .map(|(field, key)| {
                let name = match key {
                    None => field.name().to_owned(),
                    Some(IndexKey::Pos(i)) => format!("{}[{i}]", field.name()),
                    Some(IndexKey::Key(k)) => format!("{}[{k:?}]", field.name()),
                };
                FieldValue {
                    field: name,
                    value: trace_value(ctx, *field, key.as_ref()),
                }
            })
            .collect()
    }
}

fn json_of(v: Val<'_>) -> serde_json::Value {
    match v {
        Val::Bytes(b) => serde_json::Value::String(String::from_utf8_lossy(&b).into_owned()),
        Val::Int(i) => i.into(),
        Val::Bool(b) => b.into(),
        Val::Ip(ip) => ip.to_string().into(),
    }
}

fn trace_value(ctx: &Ctx<'_>, field: Field, key: Option<&IndexKey>) -> serde_json::Value {
    let array_node = |n: Node| {
        compile(&Node::Call(
            super::scheme::Func::Len,
            vec![super::ast::Arg {
                node: n,
                ty: Type::bytes_array(),
            }],
        ))
    };
    let collect = |node: Node| -> serde_json::Value {
        // Element-wise: `nth` over the array until it runs out.
        let len = match array_node(node.clone()).eval(ctx, None) {
            Val::Int(n) => n as usize,
            _ => 0,
        };
        (0..len)
            .map(|i| {
                json_of(
                    compile(&Node::Index(Box::new(node.clone()), IndexKey::Pos(i))).eval(ctx, None),
                )
            })
            .collect()
    };
    match (field.ty(), key) {
        (Type::Map(_), Some(IndexKey::Key(k))) => collect(Node::Index(
            Box::new(Node::Field(field)),
            IndexKey::Key(k.clone()),
        )),
        (Type::Array(_), Some(IndexKey::Pos(i))) => json_of(
            compile(&Node::Index(
                Box::new(Node::Field(field)),
                IndexKey::Pos(*i),
            ))
            .eval(ctx, None),
        ),
        (Type::Array(_), _) => collect(Node::Field(field)),
        (Type::Map(_), _) => serde_json::Value::Null,
        _ => json_of(ctx.field(field)),
    }
}
