//! Any bytes through both parser passes, the dump, and shell expansion of every argument:
//! nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lb_parser::shell::{Lexer, NoEnv};

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = lb_parser::parse_syntax(data) {
        let _ = tree.dump();
        let lex = Lexer::new(tree.escape);
        for node in &tree.nodes {
            for arg in &node.args {
                let _ = lex.process(arg, &NoEnv);
            }
        }
    }
    let _ = lb_parser::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Lexer::new('\\').process(s, &NoEnv);
        let _ = lb_parser::parse_mount(s, &|v| Ok(v.to_string()));
    }
});
