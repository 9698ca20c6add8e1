"""HDF5 tables without pickle: a file is inspected with h5py, which never unpickles, before pandas opens it.

pandas' "fixed" format stores text columns as pickled Python objects, and PyTables unpickles attributes as soon as
a node is touched; a crafted .h5 can run a command that way. So before PyTables sees a file, every dataset and
attribute is looked at raw: pickled column data is refused, and so is any pickled attribute that would import or
call something (pandas' own attributes are plain lists and dicts, which are allowed). `--allow-pickle` skips this,
for files from a source the user trusts. bertfit writes HDF5 in the "table" format, which stores text as text.
"""

from __future__ import annotations

import pickletools
import warnings
from pathlib import Path

import pandas as pd

from bertfit.errors import DataError

# Opcodes that make unpickling import a name or call something: what a payload needs, what lists and dicts do not.
_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2",
                 "EXT4"}  # fmt: skip
_REFUSED = "unpickling can run code hidden in the file, so it is refused: pass --allow-pickle if you trust its source"


def check_no_pickles(path: Path, allow_pickle: bool) -> None:
    """Refuse an HDF5 file whose columns are stored as pickles, or whose attributes hold code-running pickles."""
    if allow_pickle:
        return
    import h5py

    found: list[str] = []

    def visit(name: str, node: object) -> None:
        attrs = node.attrs  # type: ignore[attr-defined]
        if _text(attrs.get("PSEUDOATOM")) == "object" and not found:
            found.append(
                f"{path}: column data in '/{name}' is stored as Python pickles (pandas' default 'fixed' HDF5 format); "
                f"{_REFUSED}, or re-save it with DataFrame.to_hdf(path, key='data', format='table')"
            )
        for key in attrs.keys():
            if not found and _runs_code(attrs.get(key)):
                found.append(
                    f"{path}: attribute '{key}' of '/{name}' is a pickle that imports or calls code; {_REFUSED}"
                )

    try:
        with h5py.File(path, "r") as h5:
            visit("", h5)
            h5.visititems(visit)
    except OSError:
        return  # not readable as HDF5: the reader reports it with its own message
    if found:
        raise DataError(found[0])


def _text(value: object) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value if isinstance(value, str) else None


def _runs_code(value: object) -> bool:
    if not isinstance(value, bytes) or not value.rstrip().endswith(b"."):
        return False
    try:
        return any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(value))
    except Exception:  # not a pickle at all: plain bytes
        return False


def _null(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def write_hdf(df: pd.DataFrame, path: Path, key: str) -> None:
    """Write a frame as a pandas "table" (text stored as text, not pickled); mixed columns become text."""
    from bertfit.data.textwriter import cell_text

    plain = df.copy()
    for col in plain.columns:
        values = plain[col]
        if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            texts = [None if _null(v) else v if isinstance(v, str) else cell_text(v) for v in values.tolist()]
            plain[col] = pd.Series(texts, index=values.index, dtype=object)
        elif isinstance(values.dtype, pd.api.extensions.ExtensionDtype) and values.isna().any():
            plain[col] = values.map(lambda v: None if pd.isna(v) else cell_text(v)).astype(object)  # exact, as text
        elif isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
            plain[col] = values.astype(values.dtype.numpy_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTables' notes about column names that are not Python identifiers
        plain.to_hdf(path, key=key, mode="w", format="table")
