//! `cargo trainmon`: sets a crate up for trainmon (see the library's docs).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use trainmon_setup::libtorch::{Libtorch, Search, TORCH_VERSION};
use trainmon_setup::scaffold::{self, Source};

const USAGE: &str = "
usage: cargo trainmon <command>

  setup               in your crate or workspace: find libtorch 2.11.0 (LIBTORCH, LIBTORCH_USE_PYTORCH=1,
                      or the trainmon cache, installing it there once), and merge into .cargo/config.toml
                      what plain `cargo build/run/test/bench` need; a second run changes nothing
  new NAME [--trainmon-path DIR | --trainmon-git URL]
                      a new project in NAME: a training binary and a crate of hooks, then `setup` in it
  env                 print the shell export (LD_LIBRARY_PATH) to run binaries not built after `setup`
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cargo trainmon: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo trainmon …` runs `cargo-trainmon trainmon …`.
    if args.first().map(String::as_str) == Some("trainmon") {
        args.remove(0);
    }
    let cwd = std::env::current_dir().context("no current directory")?;
    match args.first().map(String::as_str) {
        Some("setup") if args.len() == 1 => setup(&cwd),
        Some("new") => {
            let (name, source) = new_args(&args[1..])?;
            let dir = cwd.join(&name);
            scaffold::write(&dir, &name, &source)?;
            println!(
                "trainmon: created {} (a training binary, and a crate of hooks in hooks/)",
                dir.display()
            );
            setup(&dir)?;
            println!("trainmon: now `cd {name} && cargo run`");
            Ok(())
        }
        Some("env") if args.len() == 1 => {
            let torch = Libtorch::locate(&Search::default())?;
            println!(
                "export LD_LIBRARY_PATH='{}'",
                torch.library_path()?.to_string_lossy().replace('\'', r"'\''")
            );
            Ok(())
        }
        Some("help" | "-h" | "--help") | None => {
            println!("{}", USAGE.trim());
            Ok(())
        }
        Some(_) => bail!("unknown command or arguments `{}`\n\n{}", args.join(" "), USAGE.trim()),
    }
}

fn setup(dir: &std::path::Path) -> Result<()> {
    let done = trainmon_setup::setup(dir)?;
    let torch = &done.libtorch;
    println!(
        "trainmon: libtorch {TORCH_VERSION} from {}: {}",
        torch.source,
        torch.dir.display()
    );
    if done.changes.is_empty() {
        println!(
            "trainmon: {} already has it all: nothing changed",
            done.config.display()
        );
    } else {
        println!("trainmon: {}:", done.config.display());
        for change in &done.changes {
            println!("  {change}");
        }
    }
    if torch.has_cuda() {
        println!("trainmon: this libtorch has CUDA: binaries that link trainmon load libtorch_cuda");
    }
    if std::env::var_os("RUSTFLAGS").is_some_and(|v| !v.is_empty()) {
        println!(
            "trainmon: warning: RUSTFLAGS is set, and cargo then ignores the config's rustflags: add {} to it",
            trainmon_setup::config::rpath_flag(&torch.lib)
        );
    }
    println!("trainmon: plain `cargo build`, `cargo run`, `cargo test` and `cargo bench` work here now");
    Ok(())
}

fn new_args(args: &[String]) -> Result<(String, Source)> {
    let mut name = None;
    let mut source = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--trainmon-path" => {
                let dir = it.next().context("--trainmon-path needs a directory")?;
                source = Some(Source::Path(PathBuf::from(dir)));
            }
            "--trainmon-git" => {
                let url = it.next().context("--trainmon-git needs a URL")?;
                source = Some(Source::Git(url.clone()));
            }
            flag if flag.starts_with('-') => bail!("unknown option `{flag}`\n\n{}", USAGE.trim()),
            _ if name.is_some() => bail!("`new` takes one name\n\n{}", USAGE.trim()),
            _ => name = Some(arg.clone()),
        }
    }
    let name = name.context("`new` needs a name: `cargo trainmon new my_model`")?;
    let source = match source {
        Some(source) => source,
        None => Source::built_from().context(
            "where is trainmon? This cargo-trainmon was not installed from a trainmon checkout: \
             say `--trainmon-path DIR` or `--trainmon-git URL`",
        )?,
    };
    Ok((name, source))
}
