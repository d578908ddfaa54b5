"""Sizes every part of the RPC path agrees on: the client pool, the server port and the codec
(one constant, so a message one side sends is one the other side takes)."""

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
