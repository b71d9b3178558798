//! The launcher's own words: `--help` of codex-oss and of each of its subcommands, as
//! printed without a terminal (clap wraps them at 100 columns).

use crate::support::{assert_user_sees, run, Scratch};

#[test]
fn help_of_every_launcher_command() {
    let scratch = Scratch::new();
    for (command, name) in [
        (&[][..], "help"),
        (&["update"][..], "help_update"),
        (&["doctor"][..], "help_doctor"),
        (&["models"][..], "help_models"),
        (&["models", "list"][..], "help_models_list"),
        (&["models", "pull"][..], "help_models_pull"),
        (&["models", "rm"][..], "help_models_rm"),
        (&["models", "import"][..], "help_models_import"),
        (&["serve"][..], "help_serve"),
        (&["clean"][..], "help_clean"),
        (&["completions"][..], "help_completions"),
        (&["gpu"][..], "help_gpu_group"),
    ] {
        let mut cmd = scratch.codex_oss();
        cmd.args(command).arg("--help");
        let out = run(cmd);
        assert!(out.status.success(), "{command:?} --help:\n{}", out.text());
        assert_eq!(out.stderr, "", "{command:?} --help:\n{}", out.text());
        assert_user_sees!(&scratch, name, out.stdout);
    }
    // Help is only words: nothing unpacked, nothing written.
    assert!(
        !scratch.oss_home().exists(),
        "--help wrote {}",
        scratch.oss_home().display()
    );
}

/// A reader that has gone away (`codex-oss completions bash | head -1`) is no panic.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let scratch = Scratch::new();
    for args in [
        &["completions", "bash"][..],
        &["--help"][..],
        &["--version"][..],
    ] {
        // A pipe whose reading end is closed before codex-oss writes a byte.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = scratch.codex_oss();
        cmd.args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped());
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {} {stderr}", out.status);
    }
}

/// A malformed config.toml is reported the same way by every command that reads it:
/// the file, the line and column, and what was expected.
#[test]
fn every_command_reports_a_bad_config_file_the_same_way() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.oss_home()).unwrap();
    std::fs::write(
        scratch.oss_home().join("config.toml"),
        "model = \"gpt-oss:20b\"\ncontext_lenght = 65536\n",
    )
    .unwrap();
    let mut lines = Vec::new();
    for args in [
        &["doctor"][..],
        &["models", "list"][..],
        &["serve"][..],
        &["exec", "say hi"][..],
    ] {
        let mut cmd = scratch.codex_oss();
        cmd.args(args);
        let out = run(cmd);
        assert!(!out.status.success(), "{args:?}: {}", out.text());
        lines.push(out.error_line());
    }
    assert!(lines.iter().all(|l| *l == lines[0]), "{lines:#?}");
    assert_user_sees!(&scratch, "a_bad_config_file", lines[0].clone());
}
