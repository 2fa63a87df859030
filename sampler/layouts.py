"""R's `RCNTXT` layout per R version and CPU, and the SEXP header constants.

R ships no debug information, so the offsets are written down here from R's sources
(src/include/Defn.h at each release; ../shared/docs/r-internals.md section 1). The fields up
to `bcpc` sit at the same offsets from R 3.5 to 4.7-devel; `relpc` appears and `srcref` moves
in 4.0 and 4.4. Every field after the `sigjmp_buf` sits 112 bytes later on aarch64, whose
`sigjmp_buf` is 312 bytes instead of 200.
"""

from __future__ import annotations

from dataclasses import dataclass

from sampler.errors import UnsupportedRError

# Context flags (unchanged since R 3.5).
CTXT_TOPLEVEL = 0
CTXT_FUNCTION = 4
CTXT_BUILTIN = 64

# SEXP types (byte 0 & 0x1F) and the fixed header offsets (64-bit, R >= 3.5).
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP = 7, 8, 9
INTSXP, REALSXP, STRSXP, VECSXP, BCODESXP = 13, 14, 16, 19, 21
TYPE_MASK = 0x1F
ALTREP_BIT = 0x80
ATTRIB = 8
CAR = 32  # also PRINTNAME of a symbol, FORMALS of a closure, FRAME of an environment
CDR = 40  # also BODY of a closure, ENCLOS of an environment
TAG = 48  # also CLOENV of a closure, HASHTAB of an environment
CELL_SIZE = 56  # sizeof(SEXPREC): one read gives a node's type, CAR, CDR and TAG
VECTOR_LENGTH = 32
VECTOR_DATA = 48

#: Oldest and newest R versions whose layouts are known.
OLDEST = (3, 5)
NEWEST = (4, 7)


@dataclass(frozen=True)
class ContextLayout:
    """Byte offsets of the `RCNTXT` fields xrtop reads."""

    name: str
    callflag: int
    promargs: int
    callfun: int
    sysparent: int
    call: int
    cloenv: int
    bcbody: int
    bcpc: int
    relpc: int | None
    srcref: int
    size: int
    nextcontext: int = 0


def _layout(name: str, shift: int, relpc: int | None, srcref: int, size: int) -> ContextLayout:
    return ContextLayout(
        name=name,
        callflag=8,
        promargs=224 + shift,
        callfun=232 + shift,
        sysparent=240 + shift,
        call=248 + shift,
        cloenv=256 + shift,
        bcbody=312 + shift,
        bcpc=320 + shift,
        relpc=None if relpc is None else relpc + shift,
        srcref=srcref + shift,
        size=size + shift,
    )


# Per family: (relpc, srcref, sizeof) on x86_64; aarch64 adds 112 to each.
_FAMILIES = {
    "3.5-3.6": (None, 360, 400),
    "4.0-4.3": (None, 368, 408),
    "4.4+": (328, 384, 432),
}
_ARCH_SHIFT = {"EM_X86_64": 0, "EM_AARCH64": 112}


def family_for(version: tuple[int, int]) -> str:
    """The layout family of R `major.minor`; raise UnsupportedRError when unknown."""
    if version < OLDEST or version > NEWEST:
        newest = f"{NEWEST[0]}.{NEWEST[1]}"
        raise UnsupportedRError(
            f"R {version[0]}.{version[1]} is not supported (xrtop reads R 3.5 to {newest})",
            f"If you know its layout matches a supported release, try --force-version {newest}.",
        )
    if version < (4, 0):
        return "3.5-3.6"
    if version < (4, 4):
        return "4.0-4.3"
    return "4.4+"


def layout_for(version: tuple[int, int], machine: str) -> ContextLayout:
    """The context layout for R `version` on ELF machine `machine` (e.g. "EM_X86_64")."""
    family = family_for(version)
    shift = _ARCH_SHIFT.get(machine)
    if shift is None:
        raise UnsupportedRError(
            f"R on {machine.removeprefix('EM_')} is not supported (x86_64 and aarch64 are)"
        )
    relpc, srcref, size = _FAMILIES[family]
    return _layout(family, shift, relpc, srcref, size)
