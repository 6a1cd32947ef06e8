# This file is part of ctrl_bps_panda.
#
# Licensed under the BSD 3-Clause License; see the LICENSE file at the top of
# this distribution.
"""Job command lines: placeholders, hex encoding and ``_cmd_line_``."""

from __future__ import annotations

__all__ = ["decode_hex", "encode_hex"]


def encode_hex(command: str) -> str:
    """Encode a command line as lower-case hex of its UTF-8 bytes.

    Parameters
    ----------
    command : `str`
        The command line.

    Returns
    -------
    encoded : `str`
        Hex digits, safe as one shell word.
    """
    return command.encode("utf-8").hex()


def decode_hex(encoded: str) -> str:
    """Decode a command line encoded by `encode_hex`.

    Parameters
    ----------
    encoded : `str`
        Hex digits.

    Returns
    -------
    command : `str`
        The command line.
    """
    return bytes.fromhex(encoded).decode("utf-8")
