//! Bicep files read with a real Bicep grammar (tree-sitter-bicep): a file
//! with a syntax error is refused with the line and column of each error,
//! and a parsed file becomes a small model of its declarations whose values
//! the tests compare with the code. Literals (strings, numbers, booleans,
//! null, objects, arrays) are kept as values; every other expression as its
//! source text, since there is no Bicep evaluator here.

use std::collections::BTreeMap;
use std::path::Path;

use tree_sitter::{Node, Parser, Tree};

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Str(String),
    Int(i64),
    Bool(bool),
    Null,
    Object(Vec<(String, Expr)>),
    Array(Vec<Expr>),
    Ternary {
        condition: String,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    /// Anything else, as written: references, calls, interpolated strings.
    Source(String),
}

impl Expr {
    /// A property of an object; panics naming the missing key.
    pub fn get(&self, key: &str) -> &Expr {
        self.find(key)
            .unwrap_or_else(|| panic!("no property {key:?} in {self:?}"))
    }

    pub fn find(&self, key: &str) -> Option<&Expr> {
        match self {
            Expr::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a dotted path of properties.
    pub fn at(&self, path: &str) -> &Expr {
        path.split('.').fold(self, |e, key| e.get(key))
    }

    pub fn keys(&self) -> Vec<&str> {
        match self {
            Expr::Object(props) => props.iter().map(|(k, _)| k.as_str()).collect(),
            other => panic!("not an object: {other:?}"),
        }
    }

    pub fn items(&self) -> &[Expr] {
        match self {
            Expr::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    pub fn str(&self) -> &str {
        match self {
            Expr::Str(s) => s,
            other => panic!("not a plain string: {other:?}"),
        }
    }

    /// The source text of a non-literal expression.
    pub fn source(&self) -> &str {
        match self {
            Expr::Source(s) => s,
            other => panic!("not an expression: {other:?}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Decorator {
    pub name: String,
    pub args: Vec<Expr>,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub default: Option<Expr>,
    pub decorators: Vec<Decorator>,
}

impl Param {
    pub fn allowed(&self) -> Vec<&str> {
        self.decorators
            .iter()
            .filter(|d| d.name == "allowed")
            .flat_map(|d| d.args[0].items().iter().map(Expr::str))
            .collect()
    }
}

/// A `resource` or `module` declaration.
#[derive(Debug, Clone)]
pub struct Declaration {
    pub symbol: String,
    /// `Type@version` of a resource, the file of a module.
    pub target: String,
    pub body: Expr,
    /// `[for <item> in <source>: ...]`: (item, source).
    pub each: Option<(String, String)>,
    /// `if (<condition>)`.
    pub condition: Option<String>,
}

#[derive(Debug, Default)]
pub struct Template {
    pub params: BTreeMap<String, Param>,
    pub vars: BTreeMap<String, Expr>,
    pub resources: Vec<Declaration>,
    pub modules: Vec<Declaration>,
    pub outputs: BTreeMap<String, Expr>,
    /// `import { a, b } from 'file'`: (names, file).
    pub imports: Vec<(Vec<String>, String)>,
}

impl Template {
    pub fn var(&self, name: &str) -> &Expr {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("no var {name}"))
    }

    pub fn param(&self, name: &str) -> &Param {
        self.params
            .get(name)
            .unwrap_or_else(|| panic!("no param {name}"))
    }

    pub fn module(&self, symbol: &str) -> &Declaration {
        self.modules
            .iter()
            .find(|m| m.symbol == symbol)
            .unwrap_or_else(|| panic!("no module {symbol}"))
    }

    /// Resources whose type (before `@`) is `kind`.
    pub fn resources_of(&self, kind: &str) -> Vec<&Declaration> {
        self.resources
            .iter()
            .filter(|r| r.target.split('@').next() == Some(kind))
            .collect()
    }

    pub fn resource_of(&self, kind: &str) -> &Declaration {
        match self.resources_of(kind).as_slice() {
            [one] => one,
            other => panic!("expected one {kind}, found {}", other.len()),
        }
    }
}

pub fn parser() -> Parser {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_bicep::LANGUAGE.into())
        .expect("the Bicep grammar loads");
    parser
}

/// Every syntax error in `source`, as "line:column: what".
pub fn syntax_errors(source: &str) -> Vec<String> {
    let tree = parser()
        .parse(source, None)
        .expect("the parser returns a tree");
    let mut errors = Vec::new();
    collect_errors(tree.root_node(), source, &mut errors);
    errors
}

fn collect_errors(node: Node, source: &str, out: &mut Vec<String>) {
    if node.is_error() || node.is_missing() {
        let p = node.start_position();
        let what = if node.is_missing() {
            format!("missing {}", node.kind())
        } else {
            let text = &source[node.byte_range()];
            format!("unexpected {:?}", text.chars().take(40).collect::<String>())
        };
        out.push(format!("{}:{}: {what}", p.row + 1, p.column + 1));
        return;
    }
    if node.has_error() {
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            collect_errors(child, source, out);
        }
    }
}

/// Parses a file, panicking with every syntax error's position.
pub fn load(path: &Path) -> Template {
    let source =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let errors = syntax_errors(&source);
    assert!(
        errors.is_empty(),
        "{} is not valid Bicep:\n{}",
        path.display(),
        errors.join("\n")
    );
    let tree: Tree = parser().parse(&source, None).unwrap();
    Reader { src: &source }.template(tree.root_node())
}

struct Reader<'a> {
    src: &'a str,
}

/// Named children, comments left out.
fn children(node: Node) -> Vec<Node> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor)
        .filter(|c| !matches!(c.kind(), "comment" | "diagnostic_comment"))
        .collect()
}

impl Reader<'_> {
    fn text(&self, node: Node) -> &str {
        &self.src[node.byte_range()]
    }

    fn template(&self, root: Node) -> Template {
        let mut t = Template::default();
        let mut decorators = Vec::new();
        for statement in children(root) {
            let parts = children(statement);
            let name = || self.text(parts[0]).to_owned();
            match statement.kind() {
                "decorators" => {
                    decorators.extend(parts.iter().map(|d| self.decorator(*d)));
                    continue;
                }
                "parameter_declaration" => {
                    let default = parts.get(2).map(|e| self.expr(*e));
                    let decorators = std::mem::take(&mut decorators);
                    t.params.insert(
                        name(),
                        Param {
                            default,
                            decorators,
                        },
                    );
                }
                "variable_declaration" => {
                    t.vars.insert(name(), self.expr(parts[1]));
                }
                "output_declaration" => {
                    t.outputs.insert(name(), self.expr(parts[2]));
                }
                "resource_declaration" => t.resources.push(self.declaration(&parts)),
                "module_declaration" => t.modules.push(self.declaration(&parts)),
                "import_functionality" => {
                    let (file, names) = parts.split_last().expect("import has a file");
                    t.imports.push((
                        names.iter().map(|n| self.text(*n).to_owned()).collect(),
                        self.expr(*file).str().to_owned(),
                    ));
                }
                _ => {}
            }
            decorators.clear();
        }
        t
    }

    fn decorator(&self, node: Node) -> Decorator {
        let call = children(node)[0];
        let function = call.child_by_field_name("function").unwrap();
        let args = call.child_by_field_name("arguments").unwrap();
        Decorator {
            name: self.text(function).to_owned(),
            args: children(args).into_iter().map(|a| self.expr(a)).collect(),
        }
    }

    fn declaration(&self, parts: &[Node]) -> Declaration {
        let symbol = self.text(parts[0]).to_owned();
        let target = self.expr(parts[1]).str().to_owned();
        let value = *parts.last().unwrap();
        let (body, each, condition) = match value.kind() {
            "for_statement" => {
                let item = value
                    .child_by_field_name("initializer")
                    .expect("a for loop with one item variable");
                let body = value.child_by_field_name("body").unwrap();
                // `[for item in <source>: body]`: the child that is neither.
                let source = children(value)
                    .into_iter()
                    .find(|c| c.id() != item.id() && c.id() != body.id())
                    .unwrap();
                (
                    self.expr(body),
                    Some((self.text(item).to_owned(), self.text(source).to_owned())),
                    None,
                )
            }
            "if_statement" => {
                let parts = children(value);
                let condition = self.text(parts[0]);
                (
                    self.expr(parts[1]),
                    None,
                    Some(condition[1..condition.len() - 1].trim().to_owned()),
                )
            }
            _ => (self.expr(value), None, None),
        };
        Declaration {
            symbol,
            target,
            body,
            each,
            condition,
        }
    }

    fn expr(&self, node: Node) -> Expr {
        match node.kind() {
            "string" => {
                let parts = children(node);
                if parts.iter().all(|p| p.kind() != "interpolation") {
                    Expr::Str(parts.iter().map(|p| self.unescape(*p)).collect())
                } else {
                    Expr::Source(self.text(node).to_owned())
                }
            }
            "number" => Expr::Int(self.text(node).parse().expect("an integer")),
            "unary_expression" if self.text(node).starts_with('-') => {
                match self.expr(node.child_by_field_name("argument").unwrap()) {
                    Expr::Int(n) => Expr::Int(-n),
                    _ => Expr::Source(self.text(node).to_owned()),
                }
            }
            "boolean" => Expr::Bool(self.text(node) == "true"),
            "null" => Expr::Null,
            "object" => Expr::Object(
                children(node)
                    .into_iter()
                    .filter(|p| p.kind() == "object_property")
                    .map(|p| {
                        let parts = children(p);
                        // A quoted key is its content; an interpolated one, as written.
                        let key = match self.expr(parts[0]) {
                            Expr::Str(s) => s,
                            _ => self.text(parts[0]).to_owned(),
                        };
                        (key, self.expr(parts[1]))
                    })
                    .collect(),
            ),
            "array" => Expr::Array(
                children(node)
                    .into_iter()
                    .filter(|c| c.kind() != "decorators")
                    .map(|c| self.expr(c))
                    .collect(),
            ),
            "ternary_expression" => Expr::Ternary {
                condition: self
                    .text(node.child_by_field_name("condition").unwrap())
                    .to_owned(),
                then: Box::new(self.expr(node.child_by_field_name("consequence").unwrap())),
                otherwise: Box::new(self.expr(node.child_by_field_name("alternative").unwrap())),
            },
            _ => Expr::Source(self.text(node).to_owned()),
        }
    }

    fn unescape(&self, part: Node) -> String {
        let text = self.text(part);
        if part.kind() != "escape_sequence" {
            return text.to_owned();
        }
        match &text[1..] {
            "n" => "\n".into(),
            "r" => "\r".into(),
            "t" => "\t".into(),
            other => other.to_owned(),
        }
    }
}
