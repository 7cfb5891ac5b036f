"""Compatibility step for hosts older than the ml-metadata / TFDV 1.21 wheels.

ml-metadata 1.21.0 and tensorflow-data-validation 1.21.0 publish Linux wheels
tagged ``manylinux_2_39`` only. On an older host (Debian 12: glibc 2.36,
GCC 12's libstdc++) they need three things, and this script does exactly those,
only where the host lacks them (on Debian 13, Ubuntu 24.04 or the official TFX
image every sub-command is a no-op):

``needs-compat``
    exit 0 when this host needs the step, 1 when it does not.
``fetch-wheels --pip PIP --dest DIR REQ...``
    downloads the ``manylinux_2_39`` wheels of REQ and renames their platform
    tag to one this pip accepts, for ``pip install --find-links DIR``.
``apply --venv VENV``
    1. patches TFDV's extension (and any other listed one that needs it): its only
       ``GLIBC_2.38`` symbols are ``__isoc23_strtol`` & co., the C23 variants of
       ``strtol`` that also accept a ``0b`` prefix; the patch points each at the
       classic function and its version at ``GLIBC_2.2.5`` (see :func:`plan_patch`);
    2. fetches libstdc++ from GCC 14 (Debian 13's ``libstdc++6``) into
       ``VENV/lib/compat`` with a private apt state, patches it the same way, and
    3. installs a ``.pth`` hook that loads it before anything else in every Python
       process of the venv (Beam's workers included), so ml-metadata finds
       ``CXXABI_1.3.15``.
``patch FILE...``
    applies step 1 to the given files (what ``apply`` uses; handy by hand).

A file is patched only when it is recognised: an x86-64 ELF shared object whose
``GLIBC_2.38`` requirement covers nothing but those four ``__isoc23_`` symbols.
Anything else is refused with the reason and left byte-for-byte untouched.
Patching twice is harmless: a patched file has nothing left to patch.

Standard library only: it runs before the virtual environment exists.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

# The C23 functions that the classic ones replace exactly for every input a
# program here parses (they differ only on a "0b" prefix).
ISOC23_PREFIX = b"__isoc23_"
REPLACEABLE = frozenset({b"strtol", b"strtoll", b"strtoul", b"strtoull"})
NEW_VERSION = b"GLIBC_2.38"
OLD_VERSION = b"GLIBC_2.2.5"  # the version of the classic strtol & co on x86-64

# What the wheels need that Debian 12 lacks.
MIN_GLIBC = (2, 38)
NEEDED_CXXABI = b"CXXABI_1.3.15"

# The extensions to patch, relative to site-packages.
EXTENSIONS = (
    "tensorflow_data_validation/pywrap/tensorflow_data_validation_extension.so",
    "ml_metadata/metadata_store/pywrap/metadata_store_extension.so",
)

# libstdc++ from GCC 14: Debian 13 ("trixie"), fetched by package name.
LIBSTDCXX_PACKAGE = "libstdc++6"
LIBSTDCXX_VERSION = "14.2.0-19"
LIBSTDCXX_SUITE = "trixie"
COMPAT_DIR = os.path.join("lib", "compat")
LOADER_MODULE = "_tfx_mtl_glibc_compat"
PTH_FILE = "00-tfx-mtl-glibc-compat.pth"  # sorts first: loads before other hooks

# ELF constants (System V gABI and the GNU symbol-versioning extension).
_ET_DYN, _EM_X86_64 = 3, 62
_SHT_DYNSYM, _SHT_GNU_VERNEED, _SHT_GNU_VERSYM = 11, 0x6FFFFFFE, 0x6FFFFFFF
_SYM_SIZE = 24


class NotRecognised(ValueError):
    """The file is not one this step knows how to patch safely."""


@dataclasses.dataclass(frozen=True)
class Patch:
    """Writes (offset, bytes) that make a file load on glibc < 2.38, and what they do."""

    writes: tuple[tuple[int, bytes], ...]
    symbols: tuple[str, ...]  # the __isoc23_ names redirected

    @property
    def needed(self) -> bool:
        return bool(self.writes)


def elf_hash(name: bytes) -> int:
    """The System V ELF hash, as stored in ``vna_hash``."""
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def _cstr(data: bytes, offset: int) -> bytes:
    end = data.find(b"\0", offset)
    if end < 0:
        raise NotRecognised(f"string at {offset} is not terminated")
    return data[offset:end]


def _sections(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(type, offset, size, link, entsize) of each section header."""
    if data[:4] != b"\x7fELF":
        raise NotRecognised("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise NotRecognised("not a 64-bit little-endian ELF file")
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type != _ET_DYN or e_machine != _EM_X86_64:
        raise NotRecognised(f"not an x86-64 shared object (type {e_type}, machine {e_machine})")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    if shoff == 0 or shentsize != 64 or shoff + shnum * 64 > len(data):
        raise NotRecognised("no usable section headers")
    sections = []
    for i in range(shnum):
        _, sh_type, _, _, off, size, link, _, _, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", data, shoff + i * 64)
        sections.append((sh_type, off, size, link, entsize))
    return sections


def _one(sections, sh_type: int, what: str):
    found = [s for s in sections if s[0] == sh_type]
    if len(found) != 1:
        raise NotRecognised(f"expected one {what} section, found {len(found)}")
    return found[0]


def plan_patch(data: bytes) -> Patch:
    """The writes that redirect ``__isoc23_strto*@GLIBC_2.38`` to ``strto*@GLIBC_2.2.5``.

    Two edits, both in place and size-preserving:
      * each such ``.dynsym`` entry's ``st_name`` moves 9 bytes on, from
        ``__isoc23_strtol`` to the ``strtol`` suffix of the same string;
      * the ``GLIBC_2.38`` vernaux entry is renamed to ``GLIBC_2.2.5`` (its
        ``vna_name`` points at that existing string, ``vna_hash`` is its hash).
    Raises :class:`NotRecognised` if anything else needs ``GLIBC_2.38``.
    """
    sections = _sections(data)
    dynsym = _one(sections, _SHT_DYNSYM, ".dynsym")
    dynstr = sections[dynsym[3]]
    str_off, str_size = dynstr[1], dynstr[2]
    strtab = data[str_off:str_off + str_size]

    # Which version index (vna_other) names GLIBC_2.38, and where its vernaux is.
    target = None  # (vernaux file offset, vna_other)
    verneeds = [s for s in sections if s[0] == _SHT_GNU_VERNEED]
    for _, off, size, _, _ in verneeds:
        pos = off
        while True:
            _, vn_cnt, _, vn_aux, vn_next = struct.unpack_from("<HHIII", data, pos)
            aux = pos + vn_aux
            for _ in range(vn_cnt):
                _, _, other, name, aux_next = struct.unpack_from("<IHHII", data, aux)
                if _cstr(strtab, name) == NEW_VERSION:
                    target = (aux, other)
                if not aux_next:
                    break
                aux += aux_next
            if not vn_next:
                break
            pos += vn_next

    versym = [s for s in sections if s[0] == _SHT_GNU_VERSYM]
    count = dynsym[2] // _SYM_SIZE
    versions = (struct.unpack_from(f"<{count}H", data, versym[0][1]) if versym
                else (0,) * count)

    writes: list[tuple[int, bytes]] = []
    symbols: list[str] = []
    for i in range(count):
        entry = dynsym[1] + i * _SYM_SIZE
        st_name, _, _, st_shndx = struct.unpack_from("<IBBH", data, entry)
        name = _cstr(strtab, st_name)
        uses_new = target is not None and (versions[i] & 0x7FFF) == target[1]
        if name.startswith(ISOC23_PREFIX):
            base = name[len(ISOC23_PREFIX):]
            if base not in REPLACEABLE or st_shndx != 0:
                raise NotRecognised(f"symbol {name.decode()} has no safe classic replacement")
            if not uses_new:
                raise NotRecognised(f"symbol {name.decode()} is not versioned GLIBC_2.38")
            writes.append((entry, struct.pack("<I", st_name + len(ISOC23_PREFIX))))
            symbols.append(name.decode())
        elif uses_new:
            raise NotRecognised(f"symbol {name.decode() or i} also needs GLIBC_2.38; "
                                "only __isoc23_strto* can be redirected")

    if target is not None:
        old = _find_string(strtab, OLD_VERSION)
        if old is None:
            raise NotRecognised("no GLIBC_2.2.5 string to point the version at")
        aux = target[0]
        writes.append((aux, struct.pack("<I", elf_hash(OLD_VERSION))))
        writes.append((aux + 8, struct.pack("<I", old)))
    return Patch(tuple(writes), tuple(symbols))


def _find_string(strtab: bytes, value: bytes) -> int | None:
    """Offset of ``value`` as a whole NUL-terminated string in a string table."""
    for match in re.finditer(re.escape(value + b"\0"), strtab):
        if match.start() == 0 or strtab[match.start() - 1] == 0:
            return match.start()
    return None


def apply_patch(data: bytes, patch: Patch) -> bytes:
    out = bytearray(data)
    for offset, value in patch.writes:
        out[offset:offset + len(value)] = value
    return bytes(out)


def patch_file(path: str) -> Patch:
    """Patches ``path`` in place when needed (atomically); refuses unknown files."""
    with open(path, "rb") as f:
        data = f.read()
    patch = plan_patch(data)
    if patch.needed:
        tmp = f"{path}.compat-tmp"
        with open(tmp, "wb") as f:
            f.write(apply_patch(data, patch))
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    return patch


# --- what the host has --------------------------------------------------------

def glibc_version() -> tuple[int, ...] | None:
    text = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else ""
    match = re.match(r"glibc (\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2])) if match else None


def system_libstdcxx() -> str | None:
    """Path of the libstdc++.so.6 the dynamic loader would pick, from ldconfig's cache."""
    try:
        out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for line in out.splitlines():
        if line.strip().startswith("libstdc++.so.6 ") and "x86-64" in line:
            return line.rsplit("=>", 1)[1].strip()
    return None


def libstdcxx_is_new_enough(path: str | None) -> bool:
    if not path or not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        return NEEDED_CXXABI + b"\0" in f.read()


def needs_compat() -> bool:
    version = glibc_version()
    if version is None:  # not glibc (e.g. musl): nothing here applies
        return False
    return version < MIN_GLIBC or not libstdcxx_is_new_enough(system_libstdcxx())


# --- steps -----------------------------------------------------------------------

def wheel_prefix(requirement: str) -> str:
    """``ml-metadata==1.21.0`` -> ``ml_metadata-1.21.0-``, how its wheel's file name starts."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", requirement.strip())
    if not match:
        raise SystemExit(f"glibc_compat: expected an exact pin NAME==VERSION, got {requirement!r}")
    return f"{match[1].lower().replace('-', '_')}-{match[2]}-"


def fetch_wheels(pip: str, dest: str, requirements: list[str]) -> None:
    """Downloads manylinux_2_39 wheels and renames their tag so this pip takes them."""
    os.makedirs(dest, exist_ok=True)
    wanted = {wheel_prefix(r) for r in requirements}
    have = {os.path.basename(p).lower() for p in
            glob.glob(os.path.join(dest, "*manylinux_2_17_x86_64.whl"))}
    if all(any(name.startswith(prefix) for name in have) for prefix in wanted):
        return
    subprocess.run([pip, "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--platform", "manylinux_2_39_x86_64", "--python-version", "3.11",
                    "--dest", dest, *requirements], check=True)
    for path in glob.glob(os.path.join(dest, "*manylinux_2_39_x86_64.whl")):
        os.replace(path, path.replace("manylinux_2_39_x86_64", "manylinux_2_17_x86_64"))


def site_packages(venv: str) -> str:
    found = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages"))
    if len(found) != 1:
        raise SystemExit(f"glibc_compat: no single site-packages under {venv}: {found}")
    return found[0]


def _debian_source() -> tuple[str, str]:
    """(archive URI, keyring) of the machine's Debian sources, read from its apt config."""
    uri = keyring = None
    candidates = sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
    for path in candidates:
        with open(path) as f:
            for stanza in f.read().split("\n\n"):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.M))
                if "debian-security" in fields.get("URIs", "") or "URIs" not in fields:
                    continue
                uri = fields["URIs"].split()[0]
                keyring = fields.get("Signed-By", "/usr/share/keyrings/debian-archive-keyring.gpg")
                break
        if uri:
            break
    if uri is None and os.path.exists("/etc/apt/sources.list"):
        with open("/etc/apt/sources.list") as f:
            match = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+\s+main", f.read(), re.M)
        if match:
            uri, keyring = match[1], "/usr/share/keyrings/debian-archive-keyring.gpg"
    if uri is None:
        raise SystemExit("glibc_compat: no Debian archive configured in /etc/apt; "
                         f"cannot fetch {LIBSTDCXX_PACKAGE} {LIBSTDCXX_VERSION}")
    return uri, keyring


def fetch_libstdcxx(dest_dir: str) -> str:
    """GCC 14's libstdc++.so.6 from Debian 13, extracted and patched into ``dest_dir``."""
    target = os.path.join(dest_dir, "libstdc++.so.6")
    if libstdcxx_is_new_enough(target):
        patch_file(target)  # no-op when already patched
        return target
    os.makedirs(dest_dir, exist_ok=True)
    uri, keyring = _debian_source()
    with tempfile.TemporaryDirectory(prefix="tfx-mtl-apt-") as tmp:
        source_list = os.path.join(tmp, "sources.list")
        with open(source_list, "w") as f:
            f.write(f"deb [signed-by={keyring}] {uri} {LIBSTDCXX_SUITE} main\n")
        for sub in ("lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(tmp, sub))
        apt = ["-q", "-o", f"Dir::Etc::SourceList={source_list}",
               "-o", "Dir::Etc::SourceParts=/dev/null",
               "-o", f"Dir::State::Lists={tmp}/lists", "-o", f"Dir::Cache={tmp}/cache",
               "-o", "APT::Sandbox::User=root"]
        subprocess.run(["apt-get", *apt, "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", *apt, "download",
                        f"{LIBSTDCXX_PACKAGE}={LIBSTDCXX_VERSION}"], check=True, cwd=tmp,
                       stdout=subprocess.DEVNULL)
        (deb,) = glob.glob(os.path.join(tmp, f"{LIBSTDCXX_PACKAGE}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "root")], check=True)
        (lib,) = glob.glob(os.path.join(tmp, "root", "usr", "lib", "*", "libstdc++.so.6.0.*"))
        shutil.copyfile(lib, target + ".tmp")
        os.chmod(target + ".tmp", 0o755)
        patch_file(target + ".tmp")
        os.replace(target + ".tmp", target)
    return target


LOADER_SOURCE = '''\
"""Loads the venv's newer libstdc++ first (tfx-mtl's glibc compatibility step, see README)."""
import ctypes
import os
import sys

_LIB = os.path.join(sys.prefix, {compat_dir!r}, "libstdc++.so.6")
if os.path.exists(_LIB):
    ctypes.CDLL(_LIB, mode=ctypes.RTLD_GLOBAL)
'''


def install_loader(venv: str) -> None:
    packages = site_packages(venv)
    with open(os.path.join(packages, LOADER_MODULE + ".py"), "w") as f:
        f.write(LOADER_SOURCE.format(compat_dir=COMPAT_DIR))
    with open(os.path.join(packages, PTH_FILE), "w") as f:
        f.write(f"import {LOADER_MODULE}\n")


def apply(venv: str) -> list[str]:
    """Makes the venv's TFX stack load on this host; returns what it did."""
    if not needs_compat():
        return ["this host's glibc and libstdc++ are new enough: nothing to do"]
    done = []
    packages = site_packages(venv)
    for relative in EXTENSIONS:
        path = os.path.join(packages, relative)
        if not os.path.exists(path):
            raise SystemExit(f"glibc_compat: {path} is missing; is the package installed?")
        try:
            patch = patch_file(path)
        except NotRecognised as e:
            raise SystemExit(f"glibc_compat: refusing to patch {path}: {e}") from None
        done.append(f"patched {relative}: {', '.join(patch.symbols)}" if patch.needed
                    else f"{relative}: nothing to patch")
    if not libstdcxx_is_new_enough(system_libstdcxx()):
        lib = fetch_libstdcxx(os.path.join(venv, COMPAT_DIR))
        install_loader(venv)
        done.append(f"libstdc++ from GCC 14 at {lib}, loaded first by {PTH_FILE}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("needs-compat", help="exit 0 if this host needs the step, else 1")
    fetch = sub.add_parser("fetch-wheels", help="download and re-tag manylinux_2_39 wheels")
    fetch.add_argument("--pip", required=True)
    fetch.add_argument("--dest", required=True)
    fetch.add_argument("requirements", nargs="+")
    apply_parser = sub.add_parser("apply", help="patch the venv (no-op on newer hosts)")
    apply_parser.add_argument("--venv", required=True)
    patch_parser = sub.add_parser("patch", help="patch these ELF files in place")
    patch_parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)

    if args.command == "needs-compat":
        return 0 if needs_compat() else 1
    if args.command == "fetch-wheels":
        fetch_wheels(args.pip, args.dest, args.requirements)
        return 0
    if args.command == "apply":
        for line in apply(args.venv):
            print(f"glibc_compat: {line}")
        return 0
    status = 0
    for path in args.files:
        try:
            patch = patch_file(path)
        except (NotRecognised, OSError) as e:
            print(f"glibc_compat: refusing to patch {path}: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}: " + (f"patched {', '.join(patch.symbols)}" if patch.needed
                             else "nothing to patch"))
    return status


if __name__ == "__main__":
    sys.exit(main())
