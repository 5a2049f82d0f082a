//! The README's "Use trainmon in your project", followed as a new user would, outside this
//! workspace: every command of the section is run (and must be in it, word for word), and the
//! files `cargo trainmon new` writes are the section's.
//!
//! Then, with plain cargo and nothing set by hand: `cargo run` (every hook of both crates fires,
//! a resource reaches its hook), `RUST_LOG=warn cargo run` (no info line), `cargo test
//! --workspace` (the hooks crate's test), the binary run directly from another directory with no
//! library path, and its needed libraries (`libtorch_cuda` where libtorch has CUDA).
//!
//! The crates are built in `target/user-crate` (torch-sys's C++ is built there once, then
//! reused); libtorch comes from the trainmon cache that `cargo xtask` uses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// This repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The README's section on using trainmon elsewhere.
fn section() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("## Use trainmon in your project")
        .expect("README has the section");
    let rest = &readme[start + 3..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_owned()
}

/// The shell commands of the section's ```sh blocks.
fn documented_commands(section: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match (in_sh, line.trim()) {
            (false, "```sh") => in_sh = true,
            (true, "```") => in_sh = false,
            (true, command) if !command.is_empty() => commands.push(command.to_owned()),
            _ => {}
        }
    }
    commands
}

/// The section's code block under the line "`path`:".
fn documented_file(section: &str, path: &str) -> String {
    let label = format!("`{path}`:\n\n```");
    let at = section.find(&label).unwrap_or_else(|| panic!("README shows {path}"));
    let block = &section[at + label.len()..];
    let body = &block[block.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

/// A user's shell: PATH with the installed `cargo trainmon` first, the shared target directory,
/// and none of the variables this workspace's `cargo xtask` sets.
struct Shell {
    home: tempfile::TempDir,
    path: std::ffi::OsString,
    ran: Vec<String>,
}

impl Shell {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        let mut path = vec![home.path().join("cargo-install/bin")];
        path.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
        Shell {
            path: std::env::join_paths(path).unwrap(),
            home,
            ran: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.home.path()
    }

    fn command(&self, program: &str, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd)
            .env("PATH", &self.path)
            .env("CARGO_INSTALL_ROOT", self.dir().join("cargo-install"))
            .env("CARGO_TARGET_DIR", root().join("target/user-crate"))
            .env_remove("LIBTORCH")
            .env_remove("LIBTORCH_USE_PYTORCH")
            .env_remove("LIBTORCH_LIB")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("RUSTFLAGS")
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR");
        cmd
    }

    /// Runs a documented command line (split on spaces; `VAR=value` prefixes are variables) in
    /// `cwd`; it must succeed.
    fn run(&mut self, line: &str, cwd: &Path) -> Output {
        let documented = line.replace(root().to_str().unwrap(), "path/to/trainmon");
        self.ran.push(documented);
        let mut words = line.split(' ').peekable();
        let mut envs = Vec::new();
        while let Some((key, value)) = words.peek().and_then(|w| w.split_once('=')) {
            envs.push((key.to_owned(), value.to_owned()));
            words.next();
        }
        let program = words.next().unwrap();
        let out = self
            .command(program, cwd)
            .args(words)
            .envs(envs)
            .output()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            out.status.success(),
            "`{line}` failed in {}:\n{}\n{}",
            cwd.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The libtorch the setup finds here: the trainmon cache's.
fn libtorch_has_cuda(config: &str) -> bool {
    let doc: toml_edit::DocumentMut = config.parse().unwrap();
    let dir = doc["env"]["LIBTORCH"]["value"].as_str().unwrap();
    Path::new(dir).join("lib/libtorch_cuda.so").exists()
}

fn needed_libraries(binary: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .expect("readelf (binutils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_owned()))
        .collect()
}

#[test]
fn the_readme_section_trains_a_crate_outside_the_workspace_with_plain_cargo() {
    let section = section();
    let root = root();
    let here = root.to_str().unwrap();
    let mut sh = Shell::new();
    let home = sh.dir().to_owned();

    sh.run(&format!("cargo install --path {here}/cargo-trainmon"), &home);

    // A new project: the section's files, exactly.
    let new = sh.run("cargo trainmon new my_model", &home);
    let project = home.join("my_model");
    sh.ran.push("cd my_model".into());
    for path in [
        "my_model/Cargo.toml",
        "my_model/hooks/Cargo.toml",
        "my_model/hooks/src/lib.rs",
        "my_model/src/main.rs",
    ] {
        let written = std::fs::read_to_string(home.join(path)).unwrap();
        let documented = documented_file(&section, path).replace("path/to/trainmon", here);
        assert_eq!(written, documented, "{path} as the README shows it");
    }
    let said = stdout(&new);
    assert!(
        said.contains("[env] LIBTORCH = "),
        "the setup says what it changed: {said}"
    );
    let config = std::fs::read_to_string(project.join(".cargo/config.toml")).unwrap();
    // gloo's headers for trainmon's c10d shim (distributed training), fetched by the setup.
    assert!(
        said.contains("[env] TRAINMON_GLOO_INCLUDE = ") && config.contains("TRAINMON_GLOO_INCLUDE"),
        "{said}\n{config}"
    );

    // A second setup changes nothing.
    let again = stdout(&sh.run("cargo trainmon setup", &project));
    assert!(again.contains("nothing changed"), "{again}");
    assert_eq!(
        std::fs::read_to_string(project.join(".cargo/config.toml")).unwrap(),
        config
    );

    // Every hook of both crates fires; the resource reaches its hooks.
    let lines = stdout(&sh.run("cargo run", &project));
    for expected in [
        "Early stopping after 2 epochs without progress.", // hooks crate, Res<Patience>
        "Batch 10: Loss = ",                               // hooks crate
        "Epoch 5 finished in ",                            // the binary's own hook
        "Trained 5 epochs on Cpu.",
    ] {
        assert!(lines.contains(expected), "{expected:?} in:\n{lines}");
    }
    assert!(!lines.contains('\x1b'), "no colour codes into a pipe");
    let quiet = sh.run("RUST_LOG=warn cargo run", &project);
    assert_eq!(stdout(&quiet), "", "RUST_LOG=warn silences the info lines");
    let tests = stdout(&sh.run("cargo test --workspace", &project));
    assert!(
        tests.contains("test tests::training_stops_when_the_loss_stays ... ok"),
        "{tests}"
    );

    // The binary, run directly from elsewhere, with no library path set.
    let binary = root.join("target/user-crate/debug/my_model");
    let direct = sh.command(binary.to_str().unwrap(), Path::new("/")).output().unwrap();
    assert!(direct.status.success(), "{}", String::from_utf8_lossy(&direct.stderr));
    assert!(stdout(&direct).contains("Trained 5 epochs"));
    let needed = needed_libraries(&binary);
    assert!(needed.iter().any(|l| l == "libtorch_cpu.so"), "{needed:?}");
    assert_eq!(
        needed.iter().any(|l| l == "libtorch_cuda.so"),
        libtorch_has_cuda(&config),
        "libtorch_cuda is linked where libtorch has CUDA: {needed:?}"
    );

    // An existing crate, with a config of its own.
    sh.run("cargo new existing", &home);
    let existing = home.join("existing");
    std::fs::create_dir_all(existing.join(".cargo")).unwrap();
    let own = "# mine\n[alias]\nb = \"build\"\n\n[build]\nrustflags = [\"-Cdebuginfo=1\"]\n";
    std::fs::write(existing.join(".cargo/config.toml"), own).unwrap();
    sh.run(&format!("cargo add trainmon --path {here}/trainmon"), &existing);
    sh.run("cargo add tch@=0.24.0 tracing", &existing);
    let changed = stdout(&sh.run("cargo trainmon setup", &existing));
    assert!(changed.contains("[build] rustflags += "), "{changed}");
    let merged = std::fs::read_to_string(existing.join(".cargo/config.toml")).unwrap();
    assert!(
        merged.starts_with("# mine\n[alias]\nb = \"build\"")
            && merged.contains("\"-Cdebuginfo=1\", \"-Clink-arg=-Wl,-rpath,"),
        "{merged}"
    );
    std::fs::write(
        existing.join("src/main.rs"),
        documented_file(&section, "my_model/src/main.rs")
            .replace("use my_model_hooks::Patience;", "")
            .replace(".resource(Patience(2))", ""),
    )
    .unwrap();
    let trained = stdout(&sh.run("cargo run", &existing));
    assert!(
        trained.contains("Epoch 5 finished in ") && trained.contains("Trained 5 epochs"),
        "{trained}"
    );

    // The template's `main` run into an error: it prints the error as text, its causes one a
    // line, and names the built-in hook by the line of `main` that added it.
    std::fs::write(existing.join("blocker"), "a file, not a directory").unwrap();
    std::fs::write(
        existing.join("src/main.rs"),
        documented_file(&section, "my_model/src/main.rs")
            .replace("use my_model_hooks::Patience;", "")
            .replace(
                ".resource(Patience(2))",
                ".with(trainmon::hooks::MetricFiles::new(\"blocker/metrics\"))",
            ),
    )
    .unwrap();
    let failed = sh
        .command("cargo", &existing)
        .args(["run", "--quiet"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{printed}");
    let error = &printed[printed.find("Error: ").expect("main prints its error")..];
    // The line of `main` that added the hook (the README shows this error).
    let written = std::fs::read_to_string(existing.join("src/main.rs")).unwrap();
    let line = 1 + written.lines().position(|l| l.contains("MetricFiles::new")).unwrap();
    let shown = format!("Error: hook `MetricFiles` (src/main.rs:{line}) failed\n\nCaused by:\n");
    assert!(
        std::fs::read_to_string(root.join("README.md"))
            .unwrap()
            .contains(&shown),
        "the README shows {shown:?}"
    );
    assert!(
        error.starts_with(&shown)
            && error.contains(") failed\n\nCaused by:\n    0: could not create ")
            && error.contains("blocker/metrics\n    1: Not a directory (os error 20)"),
        "{printed}"
    );
    assert!(!error.contains(" { ") && !error.contains("trainmon/src/"), "{printed}");

    // Trainmon reached only through another crate's re-export: the attribute cannot find it in
    // `Cargo.toml` and says what to do, under the attribute; told with `crate`, it builds.
    let facade = home.join("facade");
    std::fs::create_dir_all(facade.join("src")).unwrap();
    std::fs::write(
        facade.join("Cargo.toml"),
        format!(
            "[package]\nname = \"facade\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n\
             trainmon = {{ path = \"{here}/trainmon\" }}\n"
        ),
    )
    .unwrap();
    std::fs::write(facade.join("src/lib.rs"), "pub use trainmon;\n").unwrap();
    let user = home.join("through_facade");
    std::fs::create_dir_all(user.join("src")).unwrap();
    std::fs::write(
        user.join("Cargo.toml"),
        "[package]\nname = \"through_facade\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n\
         facade = { path = \"../facade\" }\n",
    )
    .unwrap();
    std::fs::copy(existing.join(".cargo/config.toml"), {
        std::fs::create_dir_all(user.join(".cargo")).unwrap();
        user.join(".cargo/config.toml")
    })
    .unwrap();
    let hook = |options: &str| {
        format!(
            "use facade::trainmon::EpochLogs;\n\n#[facade::trainmon::on_epoch_end{options}]\n\
             pub fn seen(epoch: &EpochLogs) {{\n    println!(\"{{}}\", epoch.epoch());\n}}\n"
        )
    };
    std::fs::write(user.join("src/lib.rs"), hook("")).unwrap();
    let refused = sh.command("cargo", &user).args(["check", "--quiet"]).output().unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("`trainmon` is not a dependency in ")
            && said.contains(
                "or say where trainmon is with `crate`, as in `#[on_epoch_end(crate = \"my_facade::trainmon\")]`"
            )
            && said.contains("src/lib.rs:3:1"),
        "a clear error under the attribute: {said}"
    );
    std::fs::write(user.join("src/lib.rs"), hook("(crate = \"facade::trainmon\")")).unwrap();
    let told = sh.command("cargo", &user).args(["check", "--quiet"]).output().unwrap();
    assert!(told.status.success(), "{}", String::from_utf8_lossy(&told.stderr));

    // Every command of the section ran, as written there.
    let documented = documented_commands(&section);
    let ran: Vec<&String> = sh.ran.iter().filter(|c| *c != "cargo new existing").collect();
    for command in &documented {
        assert!(ran.contains(&command), "README command `{command}` is run by this test");
    }
    for command in ran {
        assert!(
            documented.contains(command),
            "`{command}` is in the README's section: {documented:?}"
        );
    }
}
