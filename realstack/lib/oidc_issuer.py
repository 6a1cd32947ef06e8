"""A loopback OIDC issuer for the token-checking relay (stdlib + cryptography + PyJWT).

The second relay of the stack ("panda-relay-oidc") runs panda-server with ``token_authType = oidc``:
it verifies every ``Authorization: Bearer`` token with the production code
(``pandaserver.srvcore.oidc_utils.TokenDecoder``), which fetches the issuer's discovery document and
JWK set over HTTP. The relay wrapper serves both from the files written here; tests mint tokens with
``token``. Nothing here is a PanDA or iDDS change.

oidc_issuer.py init DIR ISSUER_URL CLIENT_ID
    (once) RSA signing key + a second, untrusted key; writes openid-configuration.json and jwks.json
oidc_issuer.py token DIR [--name N] [--sub S] [--group G ...] [--lifetime SECONDS] [--untrusted-key]
                         [--audience A]
    print a signed ID token (RS256, kid of the chosen key)
"""

import argparse
import base64
import json
import os
import sys
import time

KID = "realstack-1"


def _b64int(value):
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _new_key(path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return key


def _load_key(path):
    from cryptography.hazmat.primitives import serialization

    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def init(directory, issuer, client_id):
    os.makedirs(directory, exist_ok=True)
    key_path = os.path.join(directory, "signing-key.pem")
    key = _load_key(key_path) if os.path.exists(key_path) else _new_key(key_path)
    untrusted = os.path.join(directory, "untrusted-key.pem")
    if not os.path.exists(untrusted):
        _new_key(untrusted)
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID, "n": _b64int(numbers.n), "e": _b64int(numbers.e)}
    _write_json(os.path.join(directory, "jwks.json"), {"keys": [jwk]})
    _write_json(
        os.path.join(directory, "openid-configuration.json"),
        {
            "issuer": issuer,
            "jwks_uri": issuer.rstrip("/") + "/jwks",
            "id_token_signing_alg_values_supported": ["RS256"],
        },
    )
    _write_json(os.path.join(directory, "client.json"), {"issuer": issuer, "client_id": client_id})


def token(directory, args):
    import jwt

    with open(os.path.join(directory, "client.json")) as f:
        client = json.load(f)
    key = _load_key(os.path.join(directory, "untrusted-key.pem" if args.untrusted_key else "signing-key.pem"))
    now = int(time.time())
    claims = {
        "iss": client["issuer"],
        "aud": args.audience or client["client_id"],
        "sub": args.sub,
        "name": args.name,
        "preferred_username": args.sub,
        "groups": args.group or [],
        "iat": now,
        "exp": now + args.lifetime,
    }
    print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_init = sub.add_parser("init")
    p_init.add_argument("dir")
    p_init.add_argument("issuer")
    p_init.add_argument("client_id")
    p_tok = sub.add_parser("token")
    p_tok.add_argument("dir")
    p_tok.add_argument("--name", default="Test User")
    p_tok.add_argument("--sub", default="testuser")
    p_tok.add_argument("--group", action="append")
    p_tok.add_argument("--lifetime", type=int, default=3 * 86400)
    p_tok.add_argument("--audience")
    p_tok.add_argument("--untrusted-key", action="store_true")
    args = ap.parse_args()
    if args.cmd == "init":
        init(args.dir, args.issuer, args.client_id)
    else:
        token(args.dir, args)


if __name__ == "__main__":
    sys.exit(main())
