//! What the no-panic property tests and the fuzz target both do with one input: both parser
//! passes, the dump, error rendering, shell expansion of every argument and `--mount` reading.

use lb_parser::shell::{Lexer, NoEnv};

pub fn exercise(data: &[u8]) {
    if let Ok(tree) = lb_parser::parse_syntax(data) {
        let _ = tree.dump();
        let lex = Lexer::new(tree.escape);
        for node in &tree.nodes {
            for arg in &node.args {
                let _ = lex.process(arg, &NoEnv);
            }
        }
    }
    if let Err(e) = lb_parser::parse(data) {
        let _ = e.render("Dockerfile", data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Lexer::new('\\').process(text, &NoEnv);
        let _ = lb_parser::parse_mount(text, &|v| Ok(v.to_string()));
    }
}
