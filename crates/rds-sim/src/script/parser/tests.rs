use super::*;
use crate::script::ast::{CmpOp, Cond, RelOp, Test};

fn v() -> RouterOsVersion {
    RouterOsVersion::default()
}

fn ok(src: &str) -> Script {
    parse(src, &v()).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn err(src: &str) -> String {
    parse(src, &v()).unwrap_err().to_string()
}

#[test]
fn the_client_statements_parse() {
    let scripts = [
        ":put [:serialize to=json [/system resource print as-value]];:put [:serialize to=json [/system identity print as-value]]",
        ":put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]",
        ":put [:serialize to=json [/disk print detail as-value where type=file and slot~\"^pvc\\2D\"]]",
        ":put [:serialize to=json [/disk print detail as-value where mount-point=\"storage-pool\"]]",
        "/disk add type=file slot=\"pvc-1\" file-path=\"storage-pool/pvc-1.img\" file-size=1073741824 mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\" comment=\"x\";:put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]",
        "/disk set [find where slot=\"pvc-1\"] file-size=2147483648;:put 1",
        "/disk remove [find where slot=\"pvc-1\"]",
        ":put [:serialize to=json [/file print detail as-value where name=\"storage-pool/pvc-1.img\"]]",
        "/file remove [find where name=\"storage-pool/pvc-1.img\"]",
    ];
    for s in scripts {
        ok(s);
    }
    assert_eq!(ok(scripts[4]).commands.len(), 2);
    assert_eq!(ok(scripts[4]).count_disk_adds(), 1);
}

#[test]
fn path_spellings_and_menu_changes() {
    assert!(matches!(
        ok("/disk/add type=file").commands[0],
        Command::Add {
            menu: Menu::Disk,
            ..
        }
    ));
    assert!(matches!(
        ok("/disk add type=file").commands[0],
        Command::Add {
            menu: Menu::Disk,
            ..
        }
    ));
    assert!(matches!(
        ok("/system/resource/print").commands[0],
        Command::Print {
            menu: Menu::SystemResource,
            ..
        }
    ));
    assert!(matches!(
        ok("/system resource print").commands[0],
        Command::Print {
            menu: Menu::SystemResource,
            ..
        }
    ));
    let script = ok("/disk\nprint\n:put [find]");
    assert!(matches!(
        script.commands[1],
        Command::Print {
            menu: Menu::Disk,
            ..
        }
    ));
    assert!(
        matches!(&script.commands[2], Command::Put(Expr::Sub(c)) if matches!(**c, Command::Find { menu: Menu::Disk, .. }))
    );
    assert_eq!(ok("{ :put 1; :put 2 }\n:put 3").commands.len(), 3);
}

#[test]
fn unknown_words_and_arguments() {
    assert_eq!(err("/disk frob"), "bad command name frob (line 1 column 7)");
    assert_eq!(err("frob"), "bad command name frob (line 1 column 1)");
    assert_eq!(err(":frob 1"), "bad command name frob (line 1 column 2)");
    assert_eq!(err("/disk/frob"), "syntax error (line 1 column 7)");
    assert_eq!(
        err("/disk add bogus=1"),
        "expected end of command (line 1 column 11)"
    );
    assert_eq!(err(":put 1 2"), "expected end of command (line 1 column 8)");
    assert_eq!(
        err("/disk print where nosuch=1"),
        "syntax error (line 1 column 19)"
    );
    assert_eq!(
        err("/disk print sideways"),
        "expected end of command (line 1 column 13)"
    );
    assert_eq!(
        err(":put [/disk print"),
        "expected end of command (line 1 column 18)"
    );
    assert_eq!(err(":put 1]"), "expected end of command (line 1 column 7)");
    // An empty value followed by another argument.
    assert_eq!(
        err("/disk add comment= slot=x"),
        "expected end of command (line 1 column 20)"
    );
    assert_eq!(err("/disk set"), "missing value(s) of argument(s) numbers");
    assert_eq!(
        err(":serialize to=xml 1"),
        "input does not match any value of to"
    );
    assert_eq!(
        err("/disk print where slot~\"(\""),
        "syntax error (line 1 column 24)"
    );
}

#[test]
fn version_switch_hides_arguments() {
    let src = "/disk add type=file slot=x nvme-tcp-server-nqn=\"q\"";
    assert!(parse(src, &v()).is_ok());
    let old: RouterOsVersion = "7.20.1".parse().unwrap();
    assert_eq!(
        parse(src, &old).unwrap_err().to_string(),
        "expected end of command (line 1 column 28)"
    );
    let older: RouterOsVersion = "7.16".parse().unwrap();
    assert_eq!(
        parse("/disk add type=file file-size=1G", &older)
            .unwrap_err()
            .to_string(),
        "expected end of command (line 1 column 21)"
    );
}

#[test]
fn conditions_and_or_not_and_juxtaposition() {
    let script = ok("/disk print where slot=\"a\" and type=file or !(nvme-tcp-export)");
    let Command::Print {
        filter: Some(Cond::Or(left, right)),
        ..
    } = &script.commands[0]
    else {
        panic!("{script:?}")
    };
    assert!(matches!(**left, Cond::And(..)));
    assert!(matches!(**right, Cond::Not(_)));
    let script = ok(":put [/disk find slot=a type=file]");
    let Command::Put(Expr::Sub(find)) = &script.commands[0] else {
        panic!()
    };
    assert!(matches!(
        **find,
        Command::Find {
            filter: Some(Cond::And(..)),
            ..
        }
    ));
    let script = ok("/disk print where slot~\"^pvc-\"");
    let Command::Print {
        filter:
            Some(Cond::Cmp {
                op: CmpOp::Match,
                regex: Some(_),
                ..
            }),
        ..
    } = &script.commands[0]
    else {
        panic!()
    };
}

#[test]
fn statements_split_on_semicolons_and_newlines() {
    assert_eq!(ok(":put 1;:put 2\n:put 3\r\n\n;").commands.len(), 3);
    assert_eq!(
        err(":put 1\n:put 2 3"),
        "expected end of command (line 2 column 8)"
    );
}

#[test]
fn set_get_and_remove_shapes() {
    let script = ok(
        "/disk set pvc-1 comment=x; /disk get pvc-1 file-size; /system identity get name; /disk remove a,b",
    );
    assert!(
        matches!(&script.commands[0], Command::Set { items: Some(Expr::Lit(s)), args, .. } if s == "pvc-1" && args.len() == 1)
    );
    assert!(matches!(
        &script.commands[1],
        Command::Get {
            item: Some(_),
            name: Some(_),
            ..
        }
    ));
    assert!(matches!(
        &script.commands[2],
        Command::Get {
            item: None,
            name: Some(_),
            ..
        }
    ));
    assert!(matches!(&script.commands[3], Command::Remove { items, .. } if items.len() == 1));
    assert!(matches!(
        &ok("/system identity set name=x").commands[0],
        Command::Set {
            menu: Menu::SystemIdentity,
            ..
        }
    ));
    assert_eq!(
        err("/system identity set bogus=x"),
        "expected end of command (line 1 column 22)"
    );
}

/// The controller's CreateVolume script (one line).
const CREATE_IF_FREE: &str = ":local slotIds [/disk find where slot=\"pvc-1\"];:local fileIds [/file find where name=\"storage-pool/pvc-1.img\"];:put [:serialize to=json $slotIds];:put [:serialize to=json $fileIds];:if (([:len $slotIds] = 0) && ([:len $fileIds] = 0)) do={:put [:serialize to=json [/disk add type=file slot=\"pvc-1\" file-path=\"storage-pool/pvc-1.img\" file-size=1073741824 mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-1\" comment=\"x\"]]};:put [:serialize to=json [/disk print detail as-value where slot=\"pvc-1\"]]";

fn only_if(script: &Script) -> (&Test, &[Command], &[Command]) {
    match script.commands.as_slice() {
        [
            Command::If {
                test,
                then,
                otherwise,
            },
        ] => (test, then, otherwise),
        other => panic!("not one :if: {other:?}"),
    }
}

#[test]
fn the_create_if_free_script_parses_and_counts_its_add() {
    let script = ok(CREATE_IF_FREE);
    assert_eq!(script.commands.len(), 6);
    let Command::If { test, then, .. } = &script.commands[4] else {
        panic!("{:?}", script.commands[4])
    };
    let Test::And(left, right) = test else {
        panic!("{test:?}")
    };
    for side in [left, right] {
        assert!(
            matches!(&**side, Test::Compare(len, RelOp::Eq, zero)
                if matches!(**len, Test::Value(Expr::Sub(_))) && matches!(**zero, Test::Num(0))),
            "{side:?}"
        );
    }
    assert_eq!(then.len(), 1);
    assert_eq!(script.count_disk_adds(), 1);
    // Adds count in either branch and in the condition, whichever would run.
    let script = ok(
        ":if ([/disk add type=file] = 1) do={:if (true) do={} else={/disk add type=file}} else={/disk add type=file}",
    );
    assert_eq!(script.count_disk_adds(), 3);
}

#[test]
fn if_operators_and_their_precedence() {
    let script = ok(":if ($a = 1 || $b != \"x\" && !$c) do={:put y}");
    let (test, then, otherwise) = only_if(&script);
    let Test::Or(left, right) = test else {
        panic!("{test:?}")
    };
    assert!(matches!(**left, Test::Compare(_, RelOp::Eq, _)));
    let Test::And(b, c) = &**right else {
        panic!("{right:?}")
    };
    assert!(matches!(**b, Test::Compare(_, RelOp::NotEq, _)));
    assert!(matches!(**c, Test::Not(_)));
    assert_eq!((then.len(), otherwise.len()), (1, 0));

    for (src, expected) in [
        ("1 < 2", RelOp::Less),
        ("1 > 2", RelOp::Greater),
        ("1 <= 2", RelOp::LessEq),
        ("1 >= 2", RelOp::GreaterEq),
        ("1<=2", RelOp::LessEq),
        ("\"a\"=\"b\"", RelOp::Eq),
    ] {
        let script = ok(&format!(":if ({src}) do={{}}"));
        let (test, ..) = only_if(&script);
        assert!(
            matches!(test, Test::Compare(_, op, _) if *op == expected),
            "{src}: {test:?}"
        );
    }
    let script = ok(":if (($a = 1) and (true or false)) do={} else={:put n}");
    let (test, _, otherwise) = only_if(&script);
    assert!(matches!(test, Test::And(_, b) if matches!(**b, Test::Or(..))));
    assert_eq!(otherwise.len(), 1);
}

#[test]
fn if_branches_nest_and_come_in_either_order() {
    let script = ok(
        ":if (true) else={:put b} do={\n:put a\n:if (false) do={:put c} else={:put d; :put e}\n}",
    );
    let (_, then, otherwise) = only_if(&script);
    assert_eq!(otherwise.len(), 1);
    assert_eq!(then.len(), 2);
    let Command::If {
        then: inner_then,
        otherwise: inner_else,
        ..
    } = &then[1]
    else {
        panic!("{:?}", then[1])
    };
    assert_eq!((inner_then.len(), inner_else.len()), (1, 2));
    // A menu change inside a branch stays there.
    let script = ok("/disk\n:if (true) do={/file\nprint}\nprint");
    assert!(matches!(
        script.commands.last(),
        Some(Command::Print {
            menu: Menu::Disk,
            ..
        })
    ));
}

#[test]
fn if_syntax_errors_reject_the_whole_script() {
    assert_eq!(
        err(":put a; :if ($a = 1 do={:put b}"),
        "syntax error (line 1 column 21)"
    );
    assert_eq!(err(":if ($a = ) do={}"), "syntax error (line 1 column 11)");
    assert_eq!(err(":if (abc = 1) do={}"), "syntax error (line 1 column 6)");
    assert_eq!(err(":if 1 do={}"), "syntax error (line 1 column 5)");
    assert_eq!(
        err(":if (1 < = 2) do={}"),
        "syntax error (line 1 column 10)"
    );
    assert_eq!(
        err(":if (true) else={:put x}"),
        "missing value(s) of argument(s) do"
    );
    assert_eq!(
        err(":if (true) then={}"),
        "expected end of command (line 1 column 12)"
    );
    assert_eq!(
        err(":if (true) do= {:put x}"),
        "expected end of command (line 1 column 16)"
    );
    assert_eq!(
        err(":if (true) do={:put x} do={:put y}"),
        "expected end of command (line 1 column 24)"
    );
    // An error inside a branch, even one never taken, fails the parse.
    assert_eq!(
        err(":put a; :if (false) do={/disk frob}"),
        "bad command name frob (line 1 column 31)"
    );
    assert_eq!(
        err(":if (true) do={:put a"),
        "syntax error (line 1 column 22)"
    );
}
