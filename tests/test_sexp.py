"""Reading R objects (sampler.sexp): one policy for every reader.

A string (CHARSXP) is read with a first guess and once more when longer, up to MAX_STRING;
a longer length is a torn or corrupt object, refused without reading it; an unreadable
address is a BadAddressError. The fakes check the policy's edges; a real R on every lab
version shows that names longer than the first guess are read whole.
"""

from __future__ import annotations

import struct

import pytest
from conftest import REnv
from conftest import RLauncher
from conftest import sample
from fakes import HEAP
from fakes import FakeMemory
from fakes import cell
from fakes import charsxp

from sampler.errors import BadAddressError
from sampler.errors import TornSampleError
from sampler.layouts import ALTREP_BIT
from sampler.layouts import INTSXP
from sampler.layouts import LISTSXP
from sampler.layouts import SYMSXP
from sampler.layouts import VECTOR_DATA
from sampler.layouts import VECTOR_LENGTH
from sampler.sexp import MAX_STRING
from sampler.sexp import SymbolNames
from sampler.sexp import read_charsxp
from sampler.sexp import read_vector
from sampler.target import attach


def test_a_string_longer_than_the_first_guess_is_read_whole() -> None:
    text = "x" * 300
    memory = FakeMemory({HEAP: charsxp(text)})
    assert read_charsxp(memory, HEAP) == text


def test_a_string_at_the_end_of_a_mapping_is_read_without_reading_past_it() -> None:
    # GIVEN a short string whose mapping ends right after it (shorter than the first guess)
    data = charsxp("fib")
    memory = FakeMemory({HEAP: data[: VECTOR_DATA + 3]})
    # THEN it is read from what there is
    assert read_charsxp(memory, HEAP) == "fib"


def test_an_unreadable_string_is_a_bad_address() -> None:
    memory = FakeMemory({HEAP: charsxp("fib")})
    with pytest.raises(BadAddressError):
        read_charsxp(memory, HEAP + 0x10_0000)
    with pytest.raises(BadAddressError):  # a header cut short
        read_charsxp(FakeMemory({HEAP: charsxp("fib")[:16]}), HEAP)


def test_a_string_longer_than_the_limit_is_torn_and_not_read() -> None:
    # GIVEN a CHARSXP whose length word says more than any name (a freed and reused object)
    data = bytearray(charsxp("fib"))
    struct.pack_into("<Q", data, VECTOR_LENGTH, MAX_STRING + 1)
    memory = FakeMemory({HEAP: bytes(data)}, max_request=VECTOR_DATA + 64)
    # THEN it is refused without a read of that length (FakeMemory fails on one)
    with pytest.raises(TornSampleError):
        read_charsxp(memory, HEAP)


def test_file_names_keep_their_bytes_and_shown_names_replace_them() -> None:
    data = bytearray(charsxp("ab"))
    data[VECTOR_DATA] = 0xFF  # not UTF-8
    memory = FakeMemory({HEAP: bytes(data)})
    assert read_charsxp(memory, HEAP) == "\ufffdb"
    kept = read_charsxp(memory, HEAP, "surrogateescape")
    assert kept.encode("utf-8", "surrogateescape") == b"\xffb"


def test_a_symbol_name_is_read_once_and_a_non_symbol_is_torn() -> None:
    name = HEAP
    symbol = HEAP + 0x100
    not_symbol = HEAP + 0x200
    image = bytearray(0x300)
    image[0 : len(charsxp("fib"))] = charsxp("fib")
    image[0x100 : 0x100 + 56] = cell(SYMSXP, name)
    image[0x200 : 0x200 + 56] = cell(LISTSXP, name)
    memory = FakeMemory({HEAP: bytes(image)})
    names = SymbolNames(memory)
    assert names(symbol) == "fib"
    calls = memory.calls
    assert names(symbol) == "fib" and memory.calls == calls  # cached
    with pytest.raises(TornSampleError):
        names(not_symbol)


def test_vectors_of_another_type_or_altrep_are_none_and_overlong_ones_torn() -> None:
    header = bytearray(VECTOR_DATA)
    header[0] = INTSXP
    struct.pack_into("<Q", header, VECTOR_LENGTH, 2)
    data = bytes(header) + struct.pack("<ii", 7, 8)
    memory = FakeMemory({HEAP: data})
    assert read_vector(memory, HEAP, INTSXP, 4, 10) == struct.pack("<ii", 7, 8)
    assert read_vector(memory, HEAP, SYMSXP, 4, 10) is None
    altrep = bytearray(data)
    altrep[0] |= ALTREP_BIT
    assert read_vector(FakeMemory({HEAP: bytes(altrep)}), HEAP, INTSXP, 4, 10) is None
    with pytest.raises(TornSampleError):
        read_vector(memory, HEAP, INTSXP, 4, 1)


def test_names_longer_than_the_first_guess_are_read_whole_in_real_r(
    r_launcher: RLauncher, r_env: REnv
) -> None:
    # GIVEN an R running a function with a 150-character name and x[["100 characters"]]()
    run = r_launcher.start("long_names.R", "60", env=r_env)
    target = attach(run.pid)
    # WHEN it is sampled
    names = {name for stack in sample(target, 1.0).iter_stacks() for name in stack.names}
    # THEN both names are whole
    assert "f" * 150 in names
    assert 'holder[["' + "k" * 100 + '"]]' in names
