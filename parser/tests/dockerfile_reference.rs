//! The Dockerfile reference, feature by feature: heredocs, parser directives, every flag of
//! every instruction, and every check of the typed pass with the line it names.

use lb_parser::{Command, Dockerfile, MountType, NetworkMode, SecurityMode, Sharing};

fn parse(src: &str) -> Dockerfile {
    lb_parser::parse(src.as_bytes())
        .unwrap_or_else(|e| panic!("{}", e.render("Dockerfile", src.as_bytes())))
}

/// The command of the last instruction of `FROM scratch` + `body`.
fn last(body: &str) -> Command {
    let f = parse(&format!("FROM scratch\n{body}"));
    f.instructions.last().unwrap().command.clone()
}

/// The error for `src`: (line, message), and the rendered form must name the line.
fn error(src: &str) -> (usize, String) {
    let e = lb_parser::parse(src.as_bytes()).expect_err(src);
    let rendered = e.render("Dockerfile", src.as_bytes());
    let head = match e.start_line {
        0 => format!("Dockerfile: {}\n", e.message),
        n => format!("Dockerfile:{n}: {}\n", e.message),
    };
    assert!(rendered.starts_with(&head), "{rendered}");
    if e.start_line > 0 {
        let shown = src.lines().nth(e.start_line - 1).unwrap();
        assert!(rendered.contains(shown), "{rendered} lacks {shown:?}");
    }
    (e.start_line, e.message)
}

fn error_in(body: &str) -> String {
    let (line, message) = error(&format!("FROM scratch\n{body}"));
    assert_eq!(line, 2, "{message}");
    message
}

// ---------------------------------------------------------------- heredocs

#[test]
fn heredoc_run_basic() {
    let Command::Run(run) = last("RUN <<EOF\necho hi\necho there\nEOF\n") else {
        panic!()
    };
    assert_eq!(run.command.args, vec!["<<EOF"]);
    assert_eq!(run.heredocs.len(), 1);
    assert_eq!(run.heredocs[0].name, "EOF");
    assert_eq!(run.heredocs[0].content, "echo hi\necho there\n");
    assert!(run.heredocs[0].expand);
    assert!(!run.heredocs[0].chomp);
}

#[test]
fn heredoc_dash_strips_tabs() {
    let src = "FROM scratch\nRUN <<-EOT\n\techo a\n\t\techo b\n\tEOT\nRUN next\n";
    let f = parse(src);
    let Command::Run(run) = &f.instructions[1].command else {
        panic!()
    };
    assert!(run.heredocs[0].chomp);
    assert_eq!(run.heredocs[0].content, "\techo a\n\t\techo b\n");
    assert_eq!(run.heredocs[0].body(), "echo a\necho b\n");
    assert_eq!(
        (f.instructions[1].start_line, f.instructions[1].end_line),
        (2, 5)
    );
    assert_eq!(f.instructions[2].start_line, 6);
    // Without the dash, a tab-indented terminator does not end the heredoc.
    assert_eq!(
        error("FROM scratch\nRUN <<EOT\nx\n\tEOT\n").1,
        "unterminated heredoc"
    );
}

#[test]
fn heredoc_quoted_delimiters_turn_expansion_off() {
    for (opener, name) in [
        ("<<\"EOF\"", "EOF"),
        ("<<'EOF'", "EOF"),
        ("<<E\"O\"F", "EOF"),
        ("<<-'END'", "END"),
    ] {
        let Command::Run(run) = last(&format!("RUN {opener}\necho $HOME\n{name}\n")) else {
            panic!()
        };
        assert_eq!(run.heredocs[0].name, name, "{opener}");
        assert!(!run.heredocs[0].expand, "{opener}");
    }
}

#[test]
fn heredoc_several_on_one_instruction() {
    let Command::Run(run) = last("RUN <<A cat /dev/stdin - 3<<B\nfirst\nA\nsecond\nB\n") else {
        panic!()
    };
    assert_eq!(run.heredocs.len(), 2);
    assert_eq!(
        (
            run.heredocs[0].name.as_str(),
            run.heredocs[0].content.as_str()
        ),
        ("A", "first\n")
    );
    assert_eq!(
        (
            run.heredocs[1].name.as_str(),
            run.heredocs[1].content.as_str()
        ),
        ("B", "second\n")
    );
    assert_eq!(run.heredocs[1].file_descriptor, 3);
}

#[test]
fn heredoc_copy_and_add_inline_files() {
    let Command::Copy(copy) = last("COPY <<one <<-two /dest/\nA\none\n\tB\n\ttwo\n") else {
        panic!()
    };
    assert!(copy.files.sources.is_empty());
    assert_eq!(copy.files.dest, "/dest/");
    let inline: Vec<(&str, &str)> = copy
        .files
        .inline
        .iter()
        .map(|f| (f.name.as_str(), f.content.as_str()))
        .collect();
    assert_eq!(inline, vec![("one", "A\n"), ("two", "B\n")]);
    let Command::Add(add) = last("ADD file <<'X' /d\n$V\nX\n") else {
        panic!()
    };
    assert_eq!(add.files.sources, vec!["file"]);
    assert!(!add.files.inline[0].expand);
    assert_eq!(add.files.inline[0].content, "$V\n");
}

#[test]
fn heredoc_not_in_json_form_or_other_instructions() {
    let f = parse("FROM scratch\nRUN [\"cat\", \"<<EOF\"]\nCMD <<EOF\n");
    let Command::Run(run) = &f.instructions[1].command else {
        panic!()
    };
    assert!(run.heredocs.is_empty());
    assert_eq!(f.instructions.len(), 3);
}

#[test]
fn heredoc_in_onbuild() {
    let f = parse("FROM scratch\nONBUILD RUN <<EOF\necho built\nEOF\n");
    let Command::Onbuild(on) = &f.instructions[1].command else {
        panic!()
    };
    assert_eq!(on.trigger, "RUN");
    assert_eq!(on.expression, "RUN <<EOF\necho built\nEOF");
    assert_eq!(f.instructions[1].end_line, 4);
}

#[test]
fn heredoc_errors() {
    assert_eq!(
        error("FROM scratch\nRUN <<EOF\necho\n"),
        (2, "unterminated heredoc".into())
    );
    assert_eq!(
        error_in("COPY a <<EOF\nx\nEOF\n"),
        "COPY cannot accept a heredoc as a destination"
    );
}

// ---------------------------------------------------------------- directives

#[test]
fn directive_syntax_escape_check() {
    let f = parse(
        "# syntax=docker/dockerfile:1.7\n# check=skip=all\n# escape=`\nFROM scratch\nRUN a `\n  b\n",
    );
    let names: Vec<(&str, &str, usize)> = f
        .directives
        .iter()
        .map(|d| (d.name.as_str(), d.value.as_str(), d.line))
        .collect();
    assert_eq!(
        names,
        vec![
            ("syntax", "docker/dockerfile:1.7", 1),
            ("check", "skip=all", 2),
            ("escape", "`", 3)
        ]
    );
    assert_eq!(f.escape, '`');
    let Command::Run(run) = &f.instructions[1].command else {
        panic!()
    };
    assert_eq!(run.command.args, vec!["a   b"]);
}

#[test]
fn directive_names_are_case_insensitive_and_spacing_free() {
    let f = parse("#ESCAPE = `\n#  Syntax=x\nFROM scratch\n");
    assert_eq!(f.escape, '`');
    assert_eq!(f.directives[1].name, "syntax");
}

#[test]
fn directives_only_at_the_top() {
    // After an instruction, a comment or a blank line, a directive is an ordinary comment.
    for src in [
        "FROM scratch\n# escape=`\nRUN a \\\n b\n",
        "# hi\n# escape=`\nFROM scratch\nRUN a \\\n b\n",
        "\n# escape=`\nFROM scratch\nRUN a \\\n b\n",
    ] {
        let f = parse(src);
        assert_eq!(f.escape, '\\', "{src:?}");
        assert!(f.directives.is_empty(), "{src:?}");
        assert_eq!(f.instructions.len(), 2, "{src:?}");
    }
    // An unknown directive name ends the block too.
    assert!(
        parse("# foo=bar\n# escape=`\nFROM scratch\n")
            .directives
            .is_empty()
    );
}

#[test]
fn directive_errors() {
    assert_eq!(
        error("# escape=x\nFROM scratch\n"),
        (1, "invalid escape token 'x' does not match ` or \\".into())
    );
    assert_eq!(
        error("# syntax=a\n# syntax=b\nFROM scratch\n"),
        (2, "only one syntax parser directive can be used".into())
    );
    assert_eq!(
        error("# check=a\n# CHECK=b\nFROM scratch\n").1,
        "only one check parser directive can be used"
    );
}

// ---------------------------------------------------------------- continuations

#[test]
fn continuation_with_comments_and_blank_lines() {
    let f = parse("FROM scratch\nRUN echo a \\\n# a comment\n\n    && echo b\nUSER x\n");
    let Command::Run(run) = &f.instructions[1].command else {
        panic!()
    };
    assert_eq!(run.command.args, vec!["echo a     && echo b"]);
    assert_eq!(
        (f.instructions[1].start_line, f.instructions[1].end_line),
        (2, 5)
    );
    assert_eq!(f.warnings.len(), 1);
    assert_eq!(f.instructions[2].start_line, 6);
}

#[test]
fn instruction_names_are_case_insensitive() {
    let f = parse("from scratch\nRuN echo\ncOpY a b\n");
    assert!(matches!(f.instructions[1].command, Command::Run(_)));
    assert!(matches!(f.instructions[2].command, Command::Copy(_)));
}

// ---------------------------------------------------------------- flags

#[test]
fn from_platform_and_stage_name() {
    let f = parse("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\n");
    let Command::From(from) = &f.instructions[0].command else {
        panic!()
    };
    assert_eq!(from.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(from.base, "golang:1.22");
    assert_eq!(from.stage_name.as_deref(), Some("build"));
}

#[test]
fn run_mount_types() {
    let Command::Run(run) = last(
        "RUN --mount=type=bind,source=.,target=/src,from=ctx \
         --mount=type=cache,target=/root/.cache,id=go,sharing=private,mode=0700,uid=1,gid=2 \
         --mount=type=tmpfs,target=/tmp,size=10m \
         --mount=type=secret,id=token,target=/run/secrets/token,required=true \
         --mount=type=ssh,id=default \
         make\n",
    ) else {
        panic!()
    };
    let kinds: Vec<MountType> = run.mounts.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        vec![
            MountType::Bind,
            MountType::Cache,
            MountType::Tmpfs,
            MountType::Secret,
            MountType::Ssh
        ]
    );
    assert_eq!(run.mounts[0].from.as_deref(), Some("ctx"));
    assert!(run.mounts[0].read_only);
    assert_eq!(run.mounts[1].sharing, Some(Sharing::Private));
    assert_eq!(
        (run.mounts[1].mode, run.mounts[1].uid, run.mounts[1].gid),
        (Some(0o700), Some(1), Some(2))
    );
    assert_eq!(run.mounts[2].size, Some(10 << 20));
    assert!(run.mounts[3].required);
    assert_eq!(run.command.args, vec!["make"]);
}

#[test]
fn run_network_and_security() {
    let Command::Run(run) = last("RUN --network=none --security=insecure true\n") else {
        panic!()
    };
    assert_eq!(run.network, Some(NetworkMode::None));
    assert_eq!(run.security, Some(SecurityMode::Insecure));
    let Command::Run(run) = last("RUN --network=host --security=sandbox true\n") else {
        panic!()
    };
    assert_eq!(run.network, Some(NetworkMode::Host));
    assert_eq!(run.security, Some(SecurityMode::Sandbox));
    assert_eq!(
        error_in("RUN --network=bridge true\n"),
        "unsupported network mode \"bridge\""
    );
    assert_eq!(
        error_in("RUN --security=privileged true\n"),
        "unsupported security mode \"privileged\""
    );
    assert_eq!(
        error_in("RUN --mount=type=volume,target=/x true\n"),
        "unsupported mount type \"volume\""
    );
}

#[test]
fn run_exec_and_shell_form() {
    let Command::Run(run) = last("RUN [\"echo\", \"a b\"]\n") else {
        panic!()
    };
    assert_eq!(
        (run.command.args, run.command.shell_form),
        (vec!["echo".to_string(), "a b".to_string()], false)
    );
    let Command::Run(run) = last("RUN echo \"a b\"\n") else {
        panic!()
    };
    assert_eq!(
        (run.command.args, run.command.shell_form),
        (vec!["echo \"a b\"".to_string()], true)
    );
}

#[test]
fn copy_flags() {
    let Command::Copy(c) = last(
        "COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=tmp/ a b /dst/\n",
    ) else {
        panic!()
    };
    assert_eq!(c.from.as_deref(), Some("build"));
    assert_eq!(c.chown.as_deref(), Some("app:app"));
    assert_eq!(c.chmod.as_deref(), Some("0755"));
    assert!(c.link && c.parents);
    assert_eq!(c.excludes, vec!["*.md", "tmp/"]);
    assert_eq!(c.files.sources, vec!["a", "b"]);
    assert_eq!(c.files.dest, "/dst/");
    let Command::Copy(c) = last("COPY --link=false [\"a b\", \"/c d\"]\n") else {
        panic!()
    };
    assert!(!c.link);
    assert!(c.files.json);
    assert_eq!(c.files.sources, vec!["a b"]);
}

#[test]
fn add_flags() {
    let Command::Add(a) = last(
        "ADD --chown=1:2 --chmod=644 --link --keep-git-dir=true --checksum=sha256:abc --exclude=x --unpack=false https://example.com/a.tgz /dst\n",
    ) else {
        panic!()
    };
    assert_eq!(a.chown.as_deref(), Some("1:2"));
    assert_eq!(a.chmod.as_deref(), Some("644"));
    assert!(a.link && a.keep_git_dir);
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!(a.excludes, vec!["x"]);
    assert_eq!(a.unpack, Some(false));
}

#[test]
fn healthcheck_flags() {
    let Command::Healthcheck(h) = last(
        "HEALTHCHECK --interval=1m30s --timeout=10s --start-period=5s --start-interval=500ms --retries=4 CMD curl -f localhost\n",
    ) else {
        panic!()
    };
    assert_eq!(h.test, vec!["CMD-SHELL", "curl -f localhost"]);
    assert_eq!(h.interval, 90_000_000_000);
    assert_eq!(h.timeout, 10_000_000_000);
    assert_eq!(h.start_period, 5_000_000_000);
    assert_eq!(h.start_interval, 500_000_000);
    assert_eq!(h.retries, 4);
    let Command::Healthcheck(h) = last("HEALTHCHECK NONE\n") else {
        panic!()
    };
    assert_eq!(h.test, vec!["NONE"]);
}

#[test]
fn flags_on_the_wrong_instruction() {
    assert_eq!(
        error_in("COPY --keep-git-dir a b\n"),
        "unknown flag: keep-git-dir"
    );
    assert_eq!(error_in("ADD --from=x a b\n"), "unknown flag: from");
    assert_eq!(error_in("ADD --parents a b\n"), "unknown flag: parents");
    assert_eq!(error_in("RUN --from=x true\n"), "unknown flag: from");
    assert_eq!(error_in("CMD --doit [\"a\"]\n"), "unknown flag: doit");
    assert_eq!(error_in("ENV --x=1 A=b\n"), "unknown flag: x");
    assert_eq!(error_in("WORKDIR --chown=1 /x\n"), "unknown flag: chown");
    assert_eq!(
        error("FROM --link scratch\n"),
        (1, "unknown flag: link".into())
    );
    assert_eq!(
        error_in("COPY --chmown=1 a b\n"),
        "unknown flag: chmown (did you mean chown?)"
    );
}

#[test]
fn flag_value_errors() {
    assert_eq!(
        error_in("COPY --from a b\n"),
        "missing a value on flag: from"
    );
    assert_eq!(
        error_in("COPY --link= a b\n"),
        "missing a value on flag: link"
    );
    assert_eq!(
        error_in("COPY --link=maybe a b\n"),
        "expecting boolean value for flag link, not: maybe"
    );
    assert_eq!(
        error_in("COPY --from=a --from=b a b\n"),
        "duplicate flag specified: from"
    );
}

// ---------------------------------------------------------------- typed checks

#[test]
fn missing_arguments() {
    let cases = [
        ("ENV\n", "ENV requires at least one argument"),
        ("LABEL\n", "LABEL requires at least one argument"),
        ("ARG\n", "ARG requires at least one argument"),
        ("EXPOSE\n", "EXPOSE requires at least one argument"),
        ("VOLUME\n", "VOLUME requires at least one argument"),
        ("ONBUILD\n", "ONBUILD requires at least one argument"),
        (
            "HEALTHCHECK\n",
            "HEALTHCHECK requires at least one argument",
        ),
        ("SHELL []\n", "SHELL requires at least one argument"),
        ("USER\n", "USER requires exactly one argument"),
        ("WORKDIR\n", "WORKDIR requires exactly one argument"),
        ("MAINTAINER\n", "MAINTAINER requires exactly one argument"),
        ("STOPSIGNAL\n", "STOPSIGNAL requires exactly one argument"),
        (
            "COPY a\n",
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        (
            "ADD a\n",
            "ADD requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        ("HEALTHCHECK CMD\n", "Missing command after HEALTHCHECK CMD"),
    ];
    for (body, message) in cases {
        assert_eq!(error_in(body), message, "{body}");
    }
    assert_eq!(
        error("FROM\n"),
        (1, "FROM requires either one or three arguments".into())
    );
    assert_eq!(
        error("FROM a b\n"),
        (1, "FROM requires either one or three arguments".into())
    );
}

#[test]
fn env_forms_and_errors() {
    let Command::Env(e) = last("ENV A=1 B=\"two words\" C\\ D=x\n") else {
        panic!()
    };
    let pairs: Vec<(&str, &str, bool)> = e
        .pairs
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str(), p.legacy))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("A", "1", false),
            ("B", "\"two words\"", false),
            ("C\\ D", "x", false)
        ]
    );
    let Command::Env(e) = last("ENV PATH /usr/bin:/bin\n") else {
        panic!()
    };
    assert_eq!(
        (
            e.pairs[0].key.as_str(),
            e.pairs[0].value.as_str(),
            e.pairs[0].legacy
        ),
        ("PATH", "/usr/bin:/bin", true)
    );
    assert_eq!(error_in("ENV PATH\n"), "ENV must have two arguments");
    assert_eq!(
        error_in("ENV A=1 B\n"),
        "Syntax error - can't find = in \"B\". Must be of the form: name=value"
    );
    assert_eq!(error_in("ENV =x\n"), "ENV names can not be blank");
    assert_eq!(error_in("LABEL =x\n"), "LABEL names can not be blank");
}

#[test]
fn arg_forms_and_errors() {
    let f = parse("ARG A B=2 C=\nFROM scratch\nARG D\n");
    let Command::Arg(a) = &f.instructions[0].command else {
        panic!()
    };
    let args: Vec<(&str, Option<&str>)> = a
        .args
        .iter()
        .map(|d| (d.name.as_str(), d.default.as_deref()))
        .collect();
    assert_eq!(args, vec![("A", None), ("B", Some("2")), ("C", Some(""))]);
    assert_eq!(f.meta_args().count(), 1);
    assert_eq!(f.stages().len(), 1);
    assert_eq!(error_in("ARG =x\n"), "ARG names can not be blank");
}

#[test]
fn onbuild_forbidden_triggers() {
    assert_eq!(
        error_in("ONBUILD ONBUILD RUN x\n"),
        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        error_in("ONBUILD FROM x\n"),
        "FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        error_in("onbuild maintainer me\n"),
        "MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    let Command::Onbuild(o) = last("ONBUILD COPY . /app\n") else {
        panic!()
    };
    assert_eq!(
        (o.trigger.as_str(), o.expression.as_str()),
        ("COPY", "COPY . /app")
    );
}

#[test]
fn json_where_only_json_is_allowed() {
    assert_eq!(
        error_in("SHELL /bin/sh -c\n"),
        "SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(
        error_in("CMD [\"a\", 1]\n"),
        "when using JSON array syntax, arrays must be comprised of strings only"
    );
    assert_eq!(
        error_in("COPY [\"a\", [\"b\"]]\n"),
        "when using JSON array syntax, arrays must be comprised of strings only"
    );
    let Command::Shell(s) = last("SHELL [\"/bin/bash\", \"-eo\", \"pipefail\", \"-c\"]\n") else {
        panic!()
    };
    assert_eq!(s.shell, vec!["/bin/bash", "-eo", "pipefail", "-c"]);
    // Invalid JSON is not an error: it is the shell form.
    let Command::Cmd(c) = last("CMD [\"unterminated\n") else {
        panic!()
    };
    assert_eq!(
        (c.args, c.shell_form),
        (vec!["[\"unterminated".to_string()], true)
    );
}

#[test]
fn bad_durations_and_healthcheck_errors() {
    assert_eq!(
        error_in("HEALTHCHECK --interval=5 CMD true\n"),
        "time: missing unit in duration \"5\""
    );
    assert_eq!(
        error_in("HEALTHCHECK --timeout=5y CMD true\n"),
        "time: unknown unit \"y\" in duration \"5y\""
    );
    assert_eq!(
        error_in("HEALTHCHECK --start-period=abc CMD true\n"),
        "time: invalid duration \"abc\""
    );
    assert_eq!(
        error_in("HEALTHCHECK --interval=10us CMD true\n"),
        "Interval \"interval\" cannot be less than 1ms"
    );
    assert_eq!(
        error_in("HEALTHCHECK --start-interval=-1s CMD true\n"),
        "Interval \"start-interval\" cannot be less than 1ms"
    );
    assert_eq!(
        error_in("HEALTHCHECK --retries=-1 CMD true\n"),
        "--retries cannot be negative (-1)"
    );
    assert_eq!(
        error_in("HEALTHCHECK --retries=x CMD true\n"),
        "strconv.ParseInt: parsing \"x\": invalid syntax"
    );
    assert_eq!(
        error_in("HEALTHCHECK NONE CMD true\n"),
        "HEALTHCHECK NONE takes no arguments"
    );
    assert_eq!(
        error_in("HEALTHCHECK BOGUS true\n"),
        "Unknown type \"BOGUS\" in HEALTHCHECK (try CMD)"
    );
    assert_eq!(
        error_in("HEALTHCHECK --bogus=1 CMD true\n"),
        "unknown flag: bogus"
    );
}

#[test]
fn stage_names_and_context() {
    assert_eq!(
        error("FROM a AS 1st\n"),
        (1, "invalid name for build stage: \"1st\", name can't start with a number or contain symbols".into())
    );
    assert_eq!(error("FROM a AS b!\n").0, 1);
    assert_eq!(
        error("RUN x\nFROM a\n"),
        (1, "no build stage in current context".into())
    );
    assert_eq!(
        error_in("RUM x\n"),
        "unknown instruction: RUM (did you mean RUN?)"
    );
    assert_eq!(
        error_in("VOLUME [\"\"]\n"),
        "VOLUME specified can not be an empty string"
    );
}

#[test]
fn syntax_errors_name_their_lines() {
    assert_eq!(
        error("FROM a\nENV A\n"),
        (2, "ENV must have two arguments".into())
    );
    assert_eq!(error(""), (0, "file with no instructions".into()));
    assert_eq!(error("# only a comment\n\n").1, "file with no instructions");
    let (line, _) = error("FROM a\nRUN a \\\n  b\nCOPY x\n");
    assert_eq!(line, 4);
}

#[test]
fn every_instruction_keeps_lines_and_original_text() {
    let f = parse("FROM a\nRUN one \\\n  two\n\nEXPOSE 80 443/udp 22\nCMD [\"x\"]\n");
    let spans: Vec<(usize, usize, &str)> = f
        .instructions
        .iter()
        .map(|i| (i.start_line, i.end_line, i.original.as_str()))
        .collect();
    assert_eq!(
        spans,
        vec![
            (1, 1, "FROM a"),
            (2, 3, "RUN one   two"),
            (5, 5, "EXPOSE 80 443/udp 22"),
            (6, 6, "CMD [\"x\"]")
        ]
    );
    let Command::Expose(e) = &f.instructions[2].command else {
        panic!()
    };
    assert_eq!(e.ports, vec!["22", "443/udp", "80"]);
}

#[test]
fn remaining_instructions() {
    let Command::Volume(v) = last("VOLUME /a /b\n") else {
        panic!()
    };
    assert_eq!(v.paths, vec!["/a", "/b"]);
    let Command::Volume(v) = last("VOLUME [\"/c\"]\n") else {
        panic!()
    };
    assert_eq!(v.paths, vec!["/c"]);
    let Command::User(u) = last("USER app:staff\n") else {
        panic!()
    };
    assert_eq!(u.user, "app:staff");
    let Command::Workdir(w) = last("WORKDIR /app dir\n") else {
        panic!()
    };
    assert_eq!(w.path, "/app dir");
    let Command::Stopsignal(s) = last("STOPSIGNAL SIGTERM\n") else {
        panic!()
    };
    assert_eq!(s.signal, "SIGTERM");
    let Command::Maintainer(m) = last("MAINTAINER Jane <j@example.com>\n") else {
        panic!()
    };
    assert_eq!(m.name, "Jane <j@example.com>");
    let Command::Entrypoint(e) = last("ENTRYPOINT [\"/init\", \"--\"]\n") else {
        panic!()
    };
    assert_eq!(e.args, vec!["/init", "--"]);
    let Command::Label(l) = last("LABEL a=b \"c d\"=e\n") else {
        panic!()
    };
    assert_eq!(l.pairs.len(), 2);
}
