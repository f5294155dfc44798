"""The generated kernel header tree (no root, no kernel needed: real files in a temp dir)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hostprof.collectors import _kheaders

CONFIG = (
    '# comment\nCONFIG_BPF=y\nCONFIG_FOO=m\nCONFIG_HZ=250\nCONFIG_NAME="x"\n'
    "# CONFIG_OFF is not set\n"
)


def test_autoconf_translates_each_kind_of_value() -> None:
    text = _kheaders.autoconf_h(CONFIG)
    assert "#define CONFIG_BPF 1" in text
    assert "#define CONFIG_FOO_MODULE 1" in text
    assert "#define CONFIG_HZ 250" in text
    assert '#define CONFIG_NAME "x"' in text
    assert "CONFIG_OFF" not in text


@pytest.mark.parametrize(
    ("release", "code"),
    [
        ("6.18.44-fc", (6 << 16) + (18 << 8) + 44),
        ("4.9.337", (4 << 16) + (9 << 8) + 255),
        ("6.1", (6 << 16) + (1 << 8)),
    ],
)
def test_version_code_caps_sublevel(release: str, code: int) -> None:
    assert _kheaders.version_code(release) == code
    assert f"#define LINUX_VERSION_CODE {code}" in _kheaders.version_h(release)


def test_generate_builds_the_tree(tmp_path: Path) -> None:
    if not (_kheaders.UAPI_LINUX / "types.h").exists():
        pytest.skip("linux-libc-dev is not installed")
    dest = _kheaders.generate(tmp_path / "tree", "6.18.44-test", CONFIG)
    assert (dest / "include/generated/autoconf.h").read_text().count("CONFIG_BPF") == 1
    assert "bcc ships its own" in (dest / "include/uapi/linux/bpf.h").read_text()
    assert (dest / "include/uapi/linux/perf_event.h").exists()
    assert (dest / "arch/x86/include/uapi/asm").resolve() == _kheaders.UAPI_ASM.resolve()
    for stub in ("linux/kconfig.h", "linux/types.h", "linux/log2.h", "linux/sched.h"):
        assert (dest / "include" / stub).exists()
    assert "r15" in (dest / "arch/x86/include/asm/ptrace.h").read_text()
    # The stubs are valid C: ilog2 folds to constants, types resolve, IS_ENABLED works.
    src = tmp_path / "t.c"
    src.write_text(
        "#include <linux/kconfig.h>\n#include <linux/types.h>\n#include <linux/log2.h>\n"
        '_Static_assert(ilog2(4096) == 12, "ilog2");\n'
        '_Static_assert(roundup_pow_of_two(1000) == 1024, "roundup");\n'
        '_Static_assert(IS_ENABLED(CONFIG_BPF) && IS_MODULE(CONFIG_FOO), "kconfig");\n'
        "u64 x; s32 y; uint32_t z;\n"
    )
    cc = subprocess.run(
        ["sh", "-c", "command -v cc || command -v gcc"], capture_output=True, text=True
    ).stdout.strip()
    if not cc:
        pytest.skip("no C compiler to check the stubs")
    res = subprocess.run(
        [
            cc,
            "-fsyntax-only",
            "-nostdinc",
            f"-I{dest}/include",
            f"-I{dest}/include/uapi",
            f"-I{dest}/arch/x86/include/uapi",
            f"-I{dest}/arch/x86/include",
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr


def test_cache_key_changes_with_config() -> None:
    assert _kheaders.tree_name("6.18", "A") != _kheaders.tree_name("6.18", "B")
    assert _kheaders.tree_name("6.18/x", "A").startswith("6.18_x-")


def test_missing_bcc_names_the_setup_command() -> None:
    # GIVEN an interpreter where `import bcc` fails (the module is blocked)
    code = (
        "import sys; sys.modules['bcc'] = None\n"
        "from hostprof.collectors import _kernel\n"
        "from hostprof._errors import DependencyError\n"
        "try:\n    _kernel.import_bcc()\nexcept DependencyError as e:\n"
        "    print(e.message); print(e.hint)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    # THEN the error is one line naming the fix
    assert "bcc is not installed" in out and "scripts/setup.sh" in out
