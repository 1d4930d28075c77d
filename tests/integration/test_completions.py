"""The shell completions (contrib/completions): each names every command and
option the binary's help lists; the bash one, driven through COMP_WORDS
in a real bash, completes commands, each command's own options and the
manifest's entry names and tags (from `mothership clearance --names`); the
fish one is driven with `complete -C`; the zsh one loads through compinit.
`meson install` puts them where each shell looks."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, ROOT, run_ms

COMPLETIONS = os.path.join(ROOT, "contrib", "completions")
BASH = os.path.join(COMPLETIONS, "mothership.bash")
ZSH = os.path.join(COMPLETIONS, "_mothership")
FISH = os.path.join(COMPLETIONS, "mothership.fish")

FLEET = """\
[[fleet.web]]
name = "web"
command = "sleep"
args = ["60"]
instances = 2
bind = "tcp://127.0.0.1:{port}"
port = 3000
tags = ["front"]

[[fleet.workers]]
name = "mailer"
command = "sleep"
args = ["60"]
tags = ["back", "front"]

[[bays.websocket]]
name = "chat"
command = "sleep"
args = ["60"]
"""


def commands():
    out = run_ms("--help").out
    cmds = re.findall(r"^  ([a-z]+)\b", out, re.M)
    assert len(cmds) >= 14, out
    return cmds


def options_of(cmd=None):
    """The options a command's help lists (the global help without cmd)."""
    out = run_ms("help", cmd).out if cmd else run_ms("--help").out
    opts = set()
    for line in out.splitlines():
        m = re.match(r" +(-[a-zA-Z])?(?:, )?(--[a-z][-a-z]*)?(?=\s|$)", line)
        if m:
            opts |= {g for g in m.groups() if g}
    return opts


def env_with_binary():
    return dict(os.environ, PATH=BUILD + os.pathsep + os.environ["PATH"])


def bash_complete(words, cwd):
    """What the bash completion offers for words (the last one is being
    completed), run in a real bash with the build's binary on PATH."""
    script = (f"source {BASH}\n"
              "COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); COMP_LINE=\"$*\"; "
              "COMP_POINT=${#COMP_LINE}; COMPREPLY=()\n"
              "_mothership\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", *words], cwd=cwd,
                       env=env_with_binary(), capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return [l for l in p.stdout.splitlines() if l]


def test_every_command_and_option_is_in_each_completion():
    cmds = commands()
    opts = options_of()
    for cmd in cmds:
        opts |= options_of(cmd)
    assert {"--config", "--only", "--names", "--socket", "--check", "-n", "-f", "--follow"} <= opts
    for path in (BASH, ZSH, FISH):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for cmd in cmds:
            assert re.search(r"(?<![\w-])%s(?![\w-])" % cmd, text), (path, cmd)
        for opt in opts:
            if path == FISH:  # fish spells them -l name / -s c
                want = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
            else:
                want = opt
            assert re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(want), text), (path, opt)


def test_bash_completion_is_registered():
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", f"source {BASH}; complete -p mothership"],
                       capture_output=True, text=True)
    assert p.stdout.strip() == "complete -F _mothership mothership", p


def test_bash_completes_commands(tmp_path):
    assert bash_complete(["mothership", "st"], tmp_path) == ["status", "stop", "start"]
    assert set(bash_complete(["mothership", ""], tmp_path)) == set(commands())
    assert set(bash_complete(["mothership", "help", "re"], tmp_path)) == {"restart", "reload"}


@pytest.mark.parametrize("cmd", ["run", "init", "clearance", "preflight", "chart", "status", "restart",
                                 "stop", "start", "signal", "logs", "reload", "drain"])
def test_bash_completes_each_commands_own_options(cmd, tmp_path):
    got = set(bash_complete(["mothership", cmd, "-"], tmp_path))
    assert got == options_of(cmd), got ^ options_of(cmd)
    # before the command: the global ones
    assert set(bash_complete(["mothership", "-"], tmp_path)) == {"-c", "--config", "-h", "--help",
                                                                  "-V", "--version"}


def test_bash_completes_entry_names_and_tags(tmp_path):
    (tmp_path / "fleet.toml").write_text(FLEET)
    m = str(tmp_path / "fleet.toml")
    assert bash_complete(["mothership", "-c", m, "restart", ""], tmp_path) == \
        ["web", "web#0", "web#1", "mailer", "chat", "@front", "@back"]
    assert bash_complete(["mothership", "restart", "-c", m, "w"], tmp_path) == ["web", "web#0", "web#1"]
    assert bash_complete(["mothership", "--config=" + m, "stop", "@"], tmp_path) == ["@front", "@back"]
    # logs and signal take one entry, not a tag; then signal takes a signal
    assert bash_complete(["mothership", "-c", m, "logs", ""], tmp_path) == \
        ["web", "web#0", "web#1", "mailer", "chat"]
    assert "USR1" in bash_complete(["mothership", "-c", m, "signal", "mailer", "U"], tmp_path)
    # --only/--except: tags, each element of a comma list
    assert bash_complete(["mothership", "run", "-c", m, "--only", "f"], tmp_path) == ["front"]
    assert bash_complete(["mothership", "run", "-c", m, "--except", "front,b"], tmp_path) == ["front,back"]
    # without -c: ./ship-manifest.toml, as the commands read it
    (tmp_path / "ship-manifest.toml").write_text(FLEET)
    assert bash_complete(["mothership", "start", "ma"], tmp_path) == ["mailer"]
    assert bash_complete(["mothership", "run", "--log-format", ""], tmp_path) == ["text", "json"]


def test_bash_completion_takes_tags_as_data(tmp_path):
    """A tag is any string: the completion offers it quoted, never splits it
    at its blanks, globs it against the cwd or runs a $(...) in it."""
    (tmp_path / "ship-manifest.toml").write_text(
        '[mothership]\n[[fleet.web]]\nname = "web"\ncommand = "true"\n'
        'tags = ["$(touch ran)", "a b", "*"]\n')
    (tmp_path / "some-file").write_text("")
    assert bash_complete(["mothership", "stop", ""], tmp_path) == \
        ["web", r"@\$\(touch\ ran\)", r"@a\ b", r"@\*"]
    assert bash_complete(["mothership", "run", "--only", "web,"], tmp_path) == \
        [r"web,\$\(touch\ ran\)", r"web,a\ b", r"web,\*"]
    assert not (tmp_path / "ran").exists()


def test_bash_completion_reads_a_manifest_under_home(tmp_path, monkeypatch):
    """-c ~/x.toml as typed: the word still has its ~, the shell has not
    expanded it yet."""
    (tmp_path / "fleet.toml").write_text(FLEET)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert bash_complete(["mothership", "-c", "~/fleet.toml", "start", "ma"], tmp_path / "..") == \
        ["mailer"]


def test_bash_completion_without_a_manifest_offers_no_names(tmp_path):
    assert bash_complete(["mothership", "restart", ""], tmp_path) == []
    # "-c -" reads the manifest from stdin: the completion must not wait on it
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                        f"source {BASH}; COMP_WORDS=(mothership -c - restart ''); COMP_CWORD=4; _mothership; "
                        "echo \"${#COMPREPLY[@]}\""],
                       cwd=tmp_path, env=env_with_binary(), input=FLEET, capture_output=True, text=True, timeout=30)
    assert p.stdout == "0\n", p


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_commands_options_and_names(tmp_path):
    (tmp_path / "fleet.toml").write_text(FLEET)
    m = str(tmp_path / "fleet.toml")

    def complete(line):
        p = subprocess.run(["fish", "--no-config", "-c", f"source {FISH}; complete -C '{line}'"],
                           cwd=tmp_path, env=env_with_binary(), capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and p.stderr == "", p.stderr
        return [l.split("\t")[0] for l in p.stdout.splitlines()]

    assert sorted(complete("mothership st")) == ["start", "status", "stop"]
    assert set(complete(f"mothership -c {m} restart ")) == {"web", "web#0", "web#1", "mailer", "chat",
                                                            "@front", "@back"}
    assert set(complete(f"mothership -c {m} logs ")) == {"web", "web#0", "web#1", "mailer", "chat"}
    assert set(complete("mothership reload --")) == {o for o in options_of("reload") if o.startswith("--")}


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_loads_through_compinit(tmp_path):
    script = (f"fpath=({COMPLETIONS} $fpath); autoload -Uz compinit; "
              f"compinit -u -D -d {tmp_path}/zcompdump; print -r -- $_comps[mothership]")
    p = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.strip() == "_mothership"
    p = subprocess.run(["zsh", "-n", ZSH], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


# One interactive zsh in a pseudo terminal (compinit is slow: once): for
# each (line, pattern) it types line<TAB>, prints what the terminal shows
# until the glob pattern matches, then clears the line and waits for the
# prompt again (a marker the typed command does not contain).
ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z "PROMPT='RE''ADY> '; fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -D; \
zstyle ':completion:*' format '[%d]'; path=($2 \$path)"
zpty -r z out '*READY> *'
shift 2
integer n=0
while (( $# >= 2 )); do
  zpty -w -n z "$1"$'\t'
  zpty -r z out "$2" || exit 1
  print -rn -- "$out"$'\0'
  (( n++ ))
  zpty -w z $'\x15'"print synced\$(( $n * 1000 ))"
  zpty -r z out "*synced$(( n * 1000 ))*READY> *" || exit 1
  shift 2
done
zpty -d z
"""


def zsh_complete(cwd, *cases):
    """What an interactive zsh shows after each line<TAB>, read from its
    terminal until that case's glob pattern matches."""
    args = [a for case in cases for a in case]
    p = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "zsh", COMPLETIONS, BUILD, *args], cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p
    outs = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", p.stdout).replace("\r", "").split("\0")
    assert len(outs) == len(cases) + 1, outs
    return outs[:-1]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_commands_options_and_names(tmp_path):
    (tmp_path / "ship-manifest.toml").write_text(FLEET)
    cmds, restart, logs, reload = zsh_complete(
        tmp_path,
        ("mothership st", "*stop *--*"),
        ("mothership restart ", "*web?#1*"),
        ("mothership logs ", "*web?#1*"),
        ("mothership reload --", "*--socket*"))
    assert re.search(r"start +-- start stopped entries", cmds) and "status" in cmds, cmds
    for name in ("@back", "@front", "chat", "mailer", "web\\#0"):
        assert name in restart, (name, restart)
    assert "mailer" in logs and "@front" not in logs, logs
    assert "--check" in reload and "--json" in reload, reload


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_takes_tags_as_data(tmp_path):
    """--only/--except offer the tags as plain strings: "[...]" in one is no
    description and ":m:{...}" no action to run."""
    (tmp_path / "ship-manifest.toml").write_text(
        '[mothership]\n[[fleet.web]]\nname = "web"\ncommand = "true"\n'
        'tags = ["zz:m:{touch ran}", "xx[d]"]\n')
    listed, done, _ = zsh_complete(
        tmp_path,
        ("mothership run --only ", "*zz*"),
        ("mothership run --only xx\\[d\\],z", "*touch??ran*"),
        ("mothership run --only zz=", "*zz=*"))
    assert "xx\\[d\\]" in listed, listed
    assert "--only xx\\[d\\],zz:m:\\{touch\\ ran" in done, done
    assert not (tmp_path / "ran").exists()


@pytest.mark.skipif(shutil.which("meson") is None, reason="meson is not installed")
def test_meson_install_puts_completions_where_shells_look(tmp_path):
    p = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--destdir", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    found = {os.path.relpath(os.path.join(d, f), tmp_path): os.path.join(d, f)
             for d, _, files in os.walk(tmp_path) for f in files}
    for want, source in (("share/bash-completion/completions/mothership", BASH),
                         ("share/zsh/vendor-completions/_mothership", ZSH),
                         ("share/fish/vendor_completions.d/mothership.fish", FISH)):
        hits = [f for f in found if f.endswith("/" + want)]
        assert len(hits) == 1, (want, sorted(found))
        with open(found[hits[0]], encoding="utf-8") as a, open(source, encoding="utf-8") as b:
            assert a.read() == b.read()
