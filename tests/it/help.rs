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
