"""The CFI decoder of sampler.native against binutils' own reading (readelf -wF).

Pure logic: no R. Small ELF files are compiled here (with .eh_frame, and with .debug_frame
only), and the host's libc is read as a large real-world case (signal trampolines, PLT
expressions, remember/restore state). Every row readelf prints must be the rule the decoder
finds at that address.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from elftools.dwarf.callframe import FDE
from elftools.elf.elffile import ELFFile

from sampler.errors import UsageError
from sampler.native import NativeUnwinder
from sampler.native import cfi
from sampler.native import cfientries
from sampler.native import check_platform
from sampler.native import unwind
from sampler.native.cfi import AT_CFA
from sampler.native.cfi import AT_EXPRESSION
from sampler.native.cfi import IN_REGISTER
from sampler.native.cfi import IS_CFA
from sampler.native.cfi import IS_EXPRESSION
from sampler.native.cfi import SAME
from sampler.native.cfi import CfiSection
from sampler.native.cfi import FrameRule
from sampler.native.debugfiles import find_debug_file
from sampler.native.expression import StackEnds
from sampler.native.expression import evaluate
from sampler.native.leb128 import read_sleb
from sampler.native.leb128 import read_uleb
from sampler.native.modules import read_cfi
from sampler.native.registers import DWARF_NAMES
from sampler.native.registers import RBP
from sampler.native.registers import RIP
from sampler.native.registers import RSP
from sampler.native.registers import USER_REGS
from sampler.native.symtab import SymbolTable
from sampler.native.symtab import read_symbols

TESTS = Path(__file__).parent
BLOCKER = TESTS / "r" / "native_block.c"
IN_CI = os.environ.get("CI") == "true"

_FDE = re.compile(r"^\S+ \S+ \S+ FDE cie=\S+ pc=([0-9a-f]+)\.\.([0-9a-f]+)$")


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if IN_CI:
            pytest.fail(f"{tool} is not installed")
        pytest.skip(f"{tool} is not installed")
    return path


def readelf_rows(path: Path) -> dict[str, list[tuple[int, str, dict[str, str]]]]:
    """readelf -wF's rows per section: (address, CFA, {column: rule}) for every FDE row."""
    # readelf exits with 1 on some system libraries (a debug link it cannot follow) while
    # printing every table: its output is what counts.
    text = subprocess.run(
        [_need("readelf"), "-wF", str(path)], capture_output=True, text=True, check=False
    ).stdout
    assert "Contents of the " in text, f"readelf printed no CFI for {path}"
    rows: dict[str, list[tuple[int, str, dict[str, str]]]] = {}
    section = ""
    columns: list[str] = []
    in_fde = False
    for line in text.splitlines():
        fields = line.split()
        if line.startswith("Contents of the "):
            section = fields[3]
            rows[section] = []
            in_fde = False
        elif not fields:
            continue
        elif _FDE.match(line):
            in_fde = True
        elif fields[1:2] == ["ZERO"] or fields[3:4] == ["CIE"]:
            in_fde = False
        elif fields[0] == "LOC":
            columns = fields[2:]
        elif in_fde and re.fullmatch(r"[0-9a-f]{8,16}", fields[0]):
            # A register rule is spelled "r9 (r9)": one cell of two words.
            cells = re.findall(r"r\d+ \(\w+\)|\S+", line)
            rows[section].append((int(cells[0], 16), cells[1], dict(zip(columns, cells[2:]))))
    return rows


def _as_readelf(rule: FrameRule) -> tuple[str, dict[str, str]]:
    """A rule spelled as readelf spells a row."""
    if rule.cfa_expression is not None:
        cfa = "exp"
    else:
        cfa = f"{DWARF_NAMES[rule.cfa_register]}{rule.cfa_offset:+d}"
    spelled: dict[int, Callable[[Any], str]] = {
        AT_CFA: lambda arg: f"c{arg:+d}",
        IS_CFA: lambda arg: f"v{arg:+d}",
        SAME: lambda arg: "s",
        IN_REGISTER: lambda arg: f"r{arg} ({DWARF_NAMES[arg]})",
        AT_EXPRESSION: lambda arg: "exp",
        IS_EXPRESSION: lambda arg: "vexp",
    }
    registers = {}
    for number, (kind, arg) in rule.registers:
        name = "ra" if number == RIP else DWARF_NAMES[number] if number < RIP else f"r{number}"
        registers[name] = spelled[kind](arg) if kind in spelled else "u"
    return cfa, registers


def check_against_readelf(path: Path, every: int = 1) -> int:
    """Compare every `every`-th row readelf prints with the decoder; return rows checked."""
    with open(path, "rb") as stream:
        sections = {section.name: section for section in read_cfi(ELFFile(stream))}
        checked = 0
        for name, rows in readelf_rows(path).items():
            section: CfiSection = sections[name]
            for address, cfa, registers in rows[::every]:
                rule = section.rule_at(address)
                assert rule is not None, f"{path} {name}: no rule at {address:#x}"
                got_cfa, got = _as_readelf(rule)
                assert got_cfa == cfa, f"{path} {name} {address:#x}: CFA {got_cfa} != {cfa}"
                for column, expected in registers.items():
                    assert got.get(column, "u") == expected, (
                        f"{path} {name} {address:#x} {column}: {got.get(column, 'u')} != "
                        f"{expected} ({rule})"
                    )
                checked += 1
    return checked


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The blocker library built three ways: -O2 (.eh_frame), -O0 with a frame pointer
    (.eh_frame), and -g without unwind tables (.debug_frame only)."""
    cc = _need("cc")
    out = tmp_path_factory.mktemp("cfi")
    flags = {
        "o2": ["-O2", "-fno-optimize-sibling-calls"],
        "o0": ["-O0", "-fno-omit-frame-pointer"],
        "debug_frame": ["-O1", "-g", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"],
    }
    built = {}
    for name, extra in flags.items():
        target = out / f"{name}.so"
        subprocess.run(
            [cc, "-shared", "-fPIC", *extra, "-o", str(target), str(BLOCKER)], check=True
        )
        built[name] = target
    return built


@pytest.mark.parametrize("variant", ["o2", "o0"])
def test_eh_frame_rules_match_readelf(compiled: dict[str, Path], variant: str) -> None:
    assert check_against_readelf(compiled[variant]) >= 8


def test_debug_frame_rules_match_readelf(compiled: dict[str, Path]) -> None:
    path = compiled["debug_frame"]
    with open(path, "rb") as stream:
        names = [section.name for section in read_cfi(ELFFile(stream))]
    assert ".debug_frame" in names
    assert check_against_readelf(path) >= 4


def test_libc_rules_match_readelf() -> None:
    """The host's libc: thousands of FDEs through .eh_frame_hdr (every 5th row checked)."""
    libc = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")
    if not libc.exists():
        pytest.skip("no x86-64 glibc at the Debian path")
    assert check_against_readelf(libc, every=5) > 1000


def test_plt_expression_gives_the_plt_cfa(compiled: dict[str, Path]) -> None:
    """The linker's CFA expression for .plt: rsp + 8, plus 8 once the entry has pushed
    its index (from byte 11 of each 16-byte entry on)."""
    with open(compiled["o2"], "rb") as stream:
        elf = ELFFile(stream)
        plt = elf.get_section_by_name(".plt")
        section = read_cfi(elf)[0]
        entry = plt["sh_addr"] + 16  # the first entry after PLT0
        rule = section.rule_at(entry)
    assert rule is not None and rule.cfa_expression is not None
    sp = 0x7FFC0000
    for offset in range(16):
        registers: list[int | None] = [None] * 17
        registers[RSP], registers[RIP] = sp, entry + offset
        cfa = evaluate(rule.cfa_expression, registers, b"", 0, ())
        assert cfa == sp + 8 + (8 if offset >= 11 else 0), offset


def test_expression_deref_outside_the_copy_says_so() -> None:
    registers: list[int | None] = [None] * 17
    registers[RSP] = 0x1000
    code = bytes([0x77, 0x10, 0x06])  # DW_OP_breg7 (rsp) +16; DW_OP_deref
    copy = (0x1234).to_bytes(8, "little") * 2
    assert evaluate(bytes([0x77, 0x08, 0x06]), registers, copy, 0x1000, ()) == 0x1234
    with pytest.raises(StackEnds) as ends:
        evaluate(code, registers, copy, 0x1000, ())
    assert ends.value.address == 0x1010


def test_other_cpus_get_one_clear_line() -> None:
    with pytest.raises(UsageError) as refused:
        check_platform("aarch64")
    assert str(refused.value).startswith("native frames can be unwound on x86-64 only")
    check_platform("x86_64")


def test_symbols_by_address_respect_sizes_and_prefer_global_names() -> None:
    func, local, glob = 2, 0x00, 0x10  # STT_FUNC; STB_LOCAL, STB_GLOBAL (<< 4)
    table = SymbolTable(
        [
            ("__libc_pause", 0x1000, 0x20, func | local),
            ("pause", 0x1000, 0x20, func | glob),
            ("next_one", 0x1100, 0x10, func | glob),
            ("data", 0x1200, 0x100, 1 | glob),  # STT_OBJECT: not code
        ]
    )
    assert table.lookup(0x1000) == ("pause", 0x1000)
    assert table.lookup(0x101F) == ("pause", 0x1000)
    assert table.lookup(0x1020) is None  # past its size: a static function the table lacks
    assert table.lookup(0x1105) == ("next_one", 0x1100)
    assert table.lookup(0x1250) is None
    assert table.address_of("__libc_pause") == table.address_of("pause") == 0x1000


def test_debug_file_by_debuglink_names_static_functions(tmp_path: Path) -> None:
    """A library stripped of its .symtab, with a .gnu_debuglink to its debug file next to
    it (CRC checked): the debug file's symbols name its static functions again."""
    cc, objcopy, strip = _need("cc"), _need("objcopy"), _need("strip")
    library, debug = tmp_path / "blocker.so", tmp_path / "blocker.debug"
    subprocess.run([cc, "-O2", "-g", "-shared", "-fPIC", "-o", library, BLOCKER], check=True)
    subprocess.run([objcopy, "--only-keep-debug", library, debug], check=True)
    subprocess.run([strip, "--strip-all", library], check=True)
    subprocess.run([objcopy, f"--add-gnu-debuglink={debug}", library], check=True)
    with open(library, "rb") as stream:
        elf = ELFFile(stream)
        assert read_symbols(elf).address_of("xr_handler") is None  # static: stripped
        found = find_debug_file(os.getpid(), str(library), elf)
        assert found is not None
        try:
            start = read_symbols(elf, found).address_of("xr_handler")
        finally:
            found.stream.close()
    assert start is not None
    debug.write_bytes(debug.read_bytes() + b"\0")  # another file: the CRC no longer matches
    with open(library, "rb") as stream:
        assert find_debug_file(os.getpid(), str(library), ELFFile(stream)) is None


@pytest.mark.parametrize("variant", ["o2", "libc"])
def test_plt_entries_are_named_as_objdump_names_them(
    compiled: dict[str, Path], variant: str
) -> None:
    path = compiled[variant] if variant in compiled else Path("/usr/lib/x86_64-linux-gnu/libc.so.6")
    if not path.exists():
        pytest.skip(f"no {path}")
    text = subprocess.run(
        [_need("objdump"), "-d", "-j", ".plt", "-j", ".plt.sec", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Entries without a symbol (IRELATIVE: "*ABS*+0x...@plt") are left unnamed here.
    expected = {
        name: int(address, 16)
        for address, name in re.findall(r"^([0-9a-f]+) <([^*>]+@plt)>:$", text, re.M)
    }
    with open(path, "rb") as stream:
        table = read_symbols(ELFFile(stream))
    assert len(expected) >= 5
    assert {name: table.address_of(name) for name in expected} == expected
    for name, address in expected.items():
        assert table.lookup(address + 4) == (name, address)


_UNNAMED_SOURCE = """
static __attribute__((noinline)) long xr_static(long n) {
    long total = 0;
    for (long i = 0; i < n; i++) total += i * i ^ (total >> 3);
    return total;
}
long xr_entry(long n) { return xr_static(n) + 1; }
"""


def test_unnamed_function_is_labelled_by_its_fde_start(tmp_path: Path) -> None:
    """A static function of a stripped library has no symbol: every pc in it is labelled
    `library+<its FDE's start>` (readelf -wF's pc=START..), which is the function's start
    (its symbol's address before stripping). The library is loaded into this process and
    unwound from made-up registers: no R."""
    cc, strip = _need("cc"), _need("strip")
    source, library = tmp_path / "unnamed.c", tmp_path / "libunnamed.so"
    source.write_text(_UNNAMED_SOURCE)
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", library, source], check=True)
    with open(library, "rb") as stream:
        symtab = ELFFile(stream).get_section_by_name(".symtab")
        static = symtab.get_symbol_by_name("xr_static")[0]
        start, size = int(static["st_value"]), int(static["st_size"])
    subprocess.run([strip, "--strip-all", library], check=True)
    text = subprocess.run(
        [_need("readelf"), "-wF", str(library)], capture_output=True, text=True, check=True
    ).stdout
    fdes = [
        (int(lo, 16), int(hi, 16)) for lo, hi in re.findall(r"FDE cie=\S+ pc=(\w+)\.\.(\w+)", text)
    ]
    fde_start = next(lo for lo, hi in fdes if lo <= start + size // 2 < hi)
    assert fde_start == start
    with open(library, "rb") as stream:
        elf = ELFFile(stream)
        assert read_symbols(elf).lookup(start) is None  # stripped: no symbol covers it
        entry = read_symbols(elf).address_of("xr_entry")
    assert entry is not None
    loaded = ctypes.CDLL(str(library))
    loaded_entry = ctypes.cast(loaded.xr_entry, ctypes.c_void_p).value
    assert loaded_entry is not None
    bias = loaded_entry - entry
    unwinder = NativeUnwinder(os.getpid())
    labels = set()
    try:
        for pc in (start, start + size // 2, start + size - 1):
            raw = [0] * 27
            raw[16], raw[19] = bias + pc, 0x7FFC0000  # rip, rsp
            # A zeroed stack: whatever the CFA, the return address read there is 0.
            stack = unwinder.unwind(USER_REGS.pack(*raw), bytes(256), 0x7FFC0000)
            assert stack.frames[0].pc == bias + pc and stack.frames[0].symbol is None
            labels.add(stack.frames[0].label())
    finally:
        unwinder.close()
    assert labels == {f"libunnamed.so+{fde_start:#x}"}


def test_plain_rules_are_the_ones_the_walk_runs_inline() -> None:
    """`FrameRule.plain`: a CFA of a register + offset and only loads near it, the return
    address among them; anything else goes the general way."""
    saved = ((6, (AT_CFA, -16)), (RIP, (AT_CFA, -8)))
    assert FrameRule(RSP, 16, None, saved, False).plain
    assert not FrameRule(-1, 0, b"\x77\x08", saved, False).plain  # an expression's CFA
    assert not FrameRule(RSP, 16, None, ((3, (SAME, 0)), *saved), False).plain
    assert not FrameRule(RSP, 16, None, ((6, (AT_CFA, -16)),), False).plain  # no return
    assert not FrameRule(RIP + 1, 16, None, saved, False).plain  # a register not tracked


def test_rules_of_one_layout_share_its_struct_up_to_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One `struct.Struct` per layout of saved registers, kept for the first layouts only;
    past the bound a rule still reads its registers right."""
    first = FrameRule(RSP, 16, None, ((6, (AT_CFA, -16)), (RIP, (AT_CFA, -8))), False)
    second = FrameRule(RBP, 16, None, ((6, (AT_CFA, -16)), (RIP, (AT_CFA, -8))), False)
    assert first.load_words is second.load_words
    monkeypatch.setattr(cfi, "_STRUCTS_BY_LAYOUT", {})
    monkeypatch.setattr(cfi, "_MAX_LAYOUTS", 1)
    kept = FrameRule(RSP, 24, None, ((3, (AT_CFA, -24)), (RIP, (AT_CFA, -8))), False)
    past = FrameRule(RSP, 32, None, ((12, (AT_CFA, -32)), (RIP, (AT_CFA, -8))), False)
    assert list(cfi._STRUCTS_BY_LAYOUT.values()) == [kept.load_words]
    words = struct.pack("<4Q", 0x12, 0x34, 0x56, 0x78)
    assert past.load_words.unpack_from(words) == (0x12, 0x78)  # at CFA - 32, CFA - 8


def test_labels_come_with_the_frames_whatever_the_frame_cache_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`NativeUnwinder.labels` are the frames' labels, whether a frame is made anew or
    taken from the cache of frames, which never holds more than its bound."""
    monkeypatch.setattr(unwind, "_MAX_CACHED_FRAMES", 2)
    libc = ctypes.CDLL(None)
    functions = [libc.getpid, libc.getppid, libc.strlen, libc.abs, libc.getpid]
    unwinder = NativeUnwinder(os.getpid())
    try:
        for function in functions * 2:
            raw = [0] * 27
            raw[16] = ctypes.cast(function, ctypes.c_void_p).value or 0
            raw[19] = 0x7FFC0000
            # A zeroed stack: the return address read is 0, the stack ends there.
            stack = unwinder.unwind(USER_REGS.pack(*raw), bytes(256), 0x7FFC0000)
            assert len(stack.frames) == 1 and stack.frames[0].symbol is not None
            assert unwinder.labels == [frame.label() for frame in stack.frames]
            assert len(unwinder._frames) <= 2
    finally:
        unwinder.close()


@pytest.mark.parametrize("variant", ["o2", "debug_frame"])
def test_entries_parse_as_pyelftools_parses_them(compiled: dict[str, Path], variant: str) -> None:
    """`cfientries.parse_fde` (struct) reads every FDE, and its CIE, as pyelftools does:
    range, factors, return-address register, signal flag and instructions; `fde_starts`
    finds the same FDEs."""
    with open(compiled[variant], "rb") as stream:
        elf = ELFFile(stream)
        for_eh_frame = variant != "debug_frame"
        name = ".eh_frame" if for_eh_frame else ".debug_frame"
        section = elf.get_section_by_name(name)
        data, address = section.data(), int(section["sh_addr"])
        info = elf.get_dwarf_info().EH_CFI_entries() if for_eh_frame else None
        if info is None:
            info = elf.get_dwarf_info().CFI_entries()
        cies: dict[int, cfientries.Cie] = {}
        # AND the index of a section without .eh_frame_hdr finds the FDEs pyelftools finds
        fdes = [(e["initial_location"], e.offset) for e in info if isinstance(e, FDE)]
        assert cfientries.fde_starts(data, for_eh_frame, address, {}) == fdes
        checked = 0
        for entry in info:
            if not isinstance(entry, FDE):
                continue
            ours = cfientries.parse_fde(data, entry.offset, for_eh_frame, address, cies)
            assert ours is not None
            cie = entry.cie
            assert (ours.start, ours.size) == (entry["initial_location"], entry["address_range"])
            assert (ours.cie.code_align, ours.cie.data_align) == (
                cie["code_alignment_factor"],
                cie["data_alignment_factor"],
            )
            assert ours.cie.return_address_register == cie["return_address_register"]
            for got, theirs in ((ours.instructions, entry), (ours.cie.instructions, cie)):
                assert [(i.opcode, list(i.args)) for i in got] == [
                    (
                        _primary(int(i.opcode)),
                        [bytes(a) if isinstance(a, list) else a for a in i.args],
                    )
                    for i in theirs.instructions
                ]
            checked += 1
    assert checked >= 5  # (the blocker library's functions)


def _primary(opcode: int) -> int:
    """pyelftools < 0.33 keeps a primary opcode's operand in its low bits."""
    return opcode & 0xC0 if opcode & 0xC0 else opcode


@pytest.mark.parametrize(
    ("encoded", "unsigned", "signed"),
    [
        # The DWARF standard's own examples (section 7.6), with a byte after each number
        (b"\x02", 2, 2),
        (b"\x7f", 127, -1),
        (b"\x80\x01", 128, 128),
        (b"\x81\x01", 129, 129),
        (b"\x82\x01", 130, 130),
        (b"\xb9\x64", 12857, 12857 - (1 << 14)),
        (b"\x7e", 126, -2),
        (b"\x81\x7f", 16257, -127),
        (b"\x80\x7f", 16256, -128),
    ],
)
def test_leb128_numbers_read_as_dwarf_defines_them(
    encoded: bytes, unsigned: int, signed: int
) -> None:
    data = b"\x55" + encoded + b"\xff"
    assert read_uleb(data, 1) == (unsigned, 1 + len(encoded))
    assert read_sleb(data, 1) == (signed, 1 + len(encoded))
