"""fedsim as a package (issue 33, "Installs like a package"; issue 35 defect 7): one copy of the code, presets as
package data, runs in the current folder's ``runs/``, a Flower app without code, and no ``sys.path`` edit the user
did not ask for (a config is code: ``fedsim check`` says which modules it imports, first).

The wheel itself, installed in a fresh venv, is exercised by ``tests/test_wheel_install.py`` (slow)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fedsim.core.config import from_flat
from fedsim.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_one_copy_of_the_core_and_no_path_extension(tmp_path):
    """``fedsim.__path__`` is fedsim's own folder: ``fedsim.fedsim`` (a second copy of the core, reached through
    the checkout root appended to ``__path__``) does not import; the shells come from the install's mapping."""
    code = ("import fedsim, fedsim.attacks, fedsim.server, fedsim.presets, importlib.util as u\n"
            "print(fedsim.__path__); print(fedsim.attacks.__file__); print(u.find_spec('fedsim.fedsim'))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    path, attacks, second = out.stdout.splitlines()
    assert path == repr([str(ROOT / "fedsim")]), path
    assert Path(attacks) == ROOT / "attacks" / "__init__.py" and second == "None"


def test_a_failed_reference_or_plugin_import_leaves_sys_path_alone(tmp_path, monkeypatch):
    from fedsim.attacks.plugins import load_plugins
    from fedsim.core.objref import load_object

    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    with pytest.raises(ConfigError, match=r"^model\.name: cannot import 'no_such_pkg_q7\.models'.*PYTHONPATH"):
        load_object("model.name", "no_such_pkg_q7.models:net")
    with pytest.raises(ConfigError, match=r"^attack\.plugins: cannot import 'no_such_plugin_q7'.*PYTHONPATH"):
        load_plugins("no_such_plugin_q7")
    assert sys.path == before


def test_no_sys_path_edit_in_the_package():
    """A static rule: no module of the installed package assigns to, appends to or inserts into ``sys.path``."""
    offenders = []
    for top in ("fedsim", "attacks", "clients", "server"):
        for path in (ROOT / top).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if any(f"sys.path.{op}" in text for op in ("append", "insert", "extend")) or "sys.path[" in text \
                    or "sys.path =" in text or "sys.path +=" in text:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _planted(tmp_path: Path) -> tuple[Path, Path]:
    """A module ``planted_q7`` beside a config naming it; importing it writes ``imported.txt``."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "planted_q7.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n"
                                            "def net(**kw):\n    raise RuntimeError('not a model')\n")
    cfg = tmp_path / "downloaded.toml"
    cfg.write_text('[model]\nname = "planted_q7:net"\n[data]\ndataset = "digits"\n')
    return cfg, marker


def test_check_says_what_a_config_imports_and_imports_nothing_from_the_cwd(tmp_path, monkeypatch, capsys):
    """``fedsim check`` on a downloaded config in its folder: the first line names the module it would import;
    the module beside it is NOT imported (exit 2, one line saying PYTHONPATH) unless PYTHONPATH names the folder."""
    from fedsim.lab.cli import main

    cfg, marker = _planted(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert str(tmp_path) not in sys.path and "" not in sys.path
    assert main(["check", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("invalid: ")  # the verdict first, then the code it would import
    assert out.splitlines()[1].startswith("# code: this config imports 1 module reference")
    assert "model.name = 'planted_q7:net' imports module 'planted_q7'" in out
    assert "cannot import 'planted_q7'" in err and "PYTHONPATH" in err and err.count("\n") == 1
    assert not marker.exists() and "planted_q7" not in sys.modules
    monkeypatch.syspath_prepend(str(tmp_path))  # what PYTHONPATH=. asks for
    try:
        main(["check", str(cfg)])
        assert marker.exists()  # now it is imported: the user asked
    finally:
        sys.modules.pop("planted_q7", None)


def test_config_code_lists_every_kind_of_reference():
    from fedsim.core.objref import config_code

    flat = {"model.name": "lab.models:net", "data.dataset": "mnist_subset", "defense.custom.mods": "a.b:mod, c:d",
            "defense.custom.strategy_wrappers": "clip_norm", "attack.plugins": "x.plug, y"}
    got = [(r.key, r.module) for r in config_code(flat)]
    assert got == [("model.name", "lab.models"), ("defense.custom.mods", "a.b"), ("defense.custom.mods", "c"),
                   ("attack.plugins", "x.plug"), ("attack.plugins", "y")]


def test_presets_are_the_configs_folder_by_name(tmp_path, monkeypatch):
    from fedsim.lab import presets

    monkeypatch.chdir(tmp_path)
    files = sorted(p.stem for p in (ROOT / "configs").glob("*.toml"))
    assert presets.names() == files and "smoke" in files and "demo" in files
    smoke = presets.presets()[files.index("smoke")]
    assert smoke.description == (ROOT / "configs" / "smoke.toml").read_text().splitlines()[0].lstrip("# ")
    assert presets.resolve("smoke") == presets.resolve("smoke.toml") == ROOT / "configs" / "smoke.toml"
    (tmp_path / "smoke").write_text("[run]\n")
    assert presets.resolve("smoke") == Path("smoke")  # an existing path wins
    with pytest.raises(ConfigError) as err:
        presets.resolve("smokee")
    assert f"not a preset name; presets: {', '.join(files)} (fedsim list presets)" in str(err.value)
    assert "\n" not in str(err.value)
    assert presets.find("../configs/smoke") is None


def test_cli_list_presets_run_names_and_sweeps_resolve(tmp_path, monkeypatch, capsys):
    from fedsim.lab import presets
    from fedsim.lab.check import config_flats
    from fedsim.lab.cli import main
    from fedsim.lab.sweep.spec import base_file

    monkeypatch.chdir(tmp_path)
    assert main(["list", "presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == sorted(p.stem for p in (ROOT / "configs").glob("*.toml"))
    assert main(["check", "nosuch-preset"]) == 2 and "fedsim list presets" in capsys.readouterr().err
    flats = config_flats(presets.resolve("sweep_dp_mini"))  # its base = "smoke.toml", beside it in the package
    assert flats[0]["run.name"] == "smoke" and len(flats) >= 3  # the base, then one per setting
    assert base_file(presets.resolve("sweep_dp_mini"), "smoke.toml") == presets.resolve("smoke")


def test_init_copies_the_presets_and_refuses_to_overwrite(tmp_path, capsys):
    from fedsim.lab.cli import main

    target = tmp_path / "my-configs"
    assert main(["init", str(target)]) == 0
    copied = sorted(p.name for p in target.glob("*.toml"))
    assert copied == sorted(p.name for p in (ROOT / "configs").glob("*.toml"))
    assert (target / "smoke.toml").read_bytes() == (ROOT / "configs" / "smoke.toml").read_bytes()
    (target / "smoke.toml").write_text("# mine\n")
    assert main(["init", str(target)]) == 2
    assert "pass --force" in capsys.readouterr().err and (target / "smoke.toml").read_text() == "# mine\n"
    assert main(["init", str(target), "--force"]) == 0
    assert (target / "smoke.toml").read_bytes() == (ROOT / "configs" / "smoke.toml").read_bytes()


def test_runs_go_to_the_current_folder_unless_out(tmp_path, monkeypatch):
    from fedsim.core.paths import ROOT_ENV, run_dir, run_folder

    monkeypatch.delenv(ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = from_flat({"run.name": "smoke"})
    assert run_folder(cfg) == run_dir(cfg) == tmp_path / "runs" / "smoke"
    assert run_folder(cfg, "elsewhere/x") == tmp_path / "elsewhere" / "x"
    assert run_folder(cfg, suffix="-deploy") == tmp_path / "runs" / "smoke-deploy"
    assert run_folder(cfg.replace(**{"run.out_dir": "out/r"})) == tmp_path / "out" / "r"
    assert run_folder(cfg.replace(**{"run.out_dir": str(tmp_path / "abs")}), ) == tmp_path / "abs"
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "root"))
    assert run_dir(cfg) == tmp_path / "root" / "runs" / "smoke"
    assert run_folder(cfg, "o") == tmp_path / "o"  # --out is a command-line path: the current folder's


def test_flower_processes_get_no_checkout_on_their_path(tmp_path, monkeypatch):
    from fedsim.lab.flower_runtime import flower_env

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert "PYTHONPATH" not in flower_env(tmp_path / ".flwr")
    monkeypatch.setenv("PYTHONPATH", "mods")  # the user's own entry, made absolute (the processes start elsewhere)
    assert flower_env(tmp_path / ".flwr")["PYTHONPATH"] == str(tmp_path / "mods")


def test_the_flower_app_carries_no_code_and_declares_the_checkouts_config(tmp_path):
    """The app ``fedsim run`` submits: a pyproject.toml generated from ExperimentConfig equal to the checkout's
    declarations; Flower's FAB of it holds no module (the processes import the installed fedsim), and the
    checkout's own FAB rules (``fab-include``) leave its code out as well."""
    import io
    import zipfile

    from flwr.cli.build import build_fab_from_disk, get_filtered_fab_paths

    from fedsim.lab.flower_app import write_app

    app = write_app(tmp_path / "app")
    assert sorted(p.name for p in app.iterdir()) == ["pyproject.toml"]
    ours = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    checkout = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert ours["config"] == checkout["config"] and ours["components"] == checkout["components"]
    assert zipfile.ZipFile(io.BytesIO(build_fab_from_disk(app))).namelist() == ["pyproject.toml", ".info/CONTENT"]
    files = {name: b"" for name in ("fedsim/__init__.py", "attacks/labels/ilrg.py", "server/app.py",
                                    "configs/smoke.toml", "docs/x.md", "LICENSE")}
    assert get_filtered_fab_paths(files, tomllib.loads((ROOT / "pyproject.toml").read_text())) == ["LICENSE"]
