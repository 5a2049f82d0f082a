//! The command line of `cargo trainmon` and of `trainmon` (the same commands: the second is
//! for `trainmon watch DIR` once installed, without cargo).

use crate::libtorch::{Libtorch, Search, TORCH_VERSION};
use crate::scaffold::{self, Source};
use crate::watch;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "
usage: cargo trainmon <command>      (or, the same: trainmon <command>)

  setup               in your crate or workspace: find libtorch 2.11.0 (LIBTORCH, LIBTORCH_USE_PYTORCH=1,
                      or the trainmon cache, installing it there once), and merge into .cargo/config.toml
                      what plain `cargo build/run/test/bench` need; a second run changes nothing
  new NAME [--trainmon-path DIR | --trainmon-git URL]
                      a new project in NAME: a training binary and a crate of hooks, then `setup` in it
  env                 print the shell export (LD_LIBRARY_PATH) to run binaries not built after `setup`
  watch DIR [DIR…] [--interval MS]
                      a live dashboard of training runs in this terminal, from the files they write
                      (DIR: a run directory, or its metrics folder); several runs side by side;
                      read again every MS milliseconds (500); q quits
";

/// Runs the command in the process's arguments; `program` names it in messages
/// (`cargo trainmon` or `trainmon`).
pub fn main(program: &str) -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: error: {err:#}");
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
        Some("watch") => watch::watch(&watch::Options::parse(&args[1..])?),
        Some("help" | "-h" | "--help") | None => {
            println!("{}", USAGE.trim());
            Ok(())
        }
        Some(_) => bail!("unknown command or arguments `{}`\n\n{}", args.join(" "), USAGE.trim()),
    }
}

fn setup(dir: &std::path::Path) -> Result<()> {
    let done = crate::setup(dir)?;
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
            crate::config::rpath_flag(&torch.lib)
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
