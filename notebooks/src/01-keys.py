# %% [markdown]
# # 01 · Keys
#
# **You will**
# - generate a cosign key pair and see what is inside `cosign.key`,
# - import a key made by `openssl`, and see which keys cosign refuses,
# - derive the public key you will hand to verifiers and policies.
#
# Nothing here needs the lab: keys are files.

# %% [markdown]
# ## Where your keys live
#
# Keys go in the workshop directory, `$LABKIT_HOME/workshop` (mode 0700), never next to the
# notebooks: a `git add notebooks/` can then never publish a private key. A notebook kernel has no
# terminal to type a password into, so cosign (and labkit) read it from `COSIGN_PASSWORD`.
# `workshop.use_password()` sets it from a random password kept in `workshop/password` (0600);
# it is never printed.

# %%
import os

from labkit import check, workshop

os.chdir(workshop.workdir())  # like `cd ~/.labkit/workshop` in a terminal
workshop.use_password()
print("password set:", "COSIGN_PASSWORD" in os.environ)

# %% [markdown]
# ## Step 1: generate a key pair
#
# cosign makes an ECDSA P-256 key, encrypts it with your password and writes two files.
# Run this cell again and it asks before overwriting, as cosign does; a notebook cell cannot
# answer, so the answer is no and your key stays. That is on purpose: a new key would leave every
# signature you made unverifiable with the new `cosign.pub`, and every policy holding the old one
# would deny what you sign next. (`--force` replaces it, when you mean to.)

# %%
workshop.run("labkit generate-key-pair")

# %% [markdown]
# ## What is inside `cosign.key`
#
# A PEM block of type `ENCRYPTED SIGSTORE PRIVATE KEY`, whose body is a JSON envelope: scrypt
# derives a key from your password and a random salt, and NaCl secretbox seals the PKCS#8 private
# key with it. Without the password the file is useless; with a weak password it is brute-forceable
# offline, so treat it as a secret anyway. (Only the structure is shown here, never the key.)

# %%
print(workshop.describe_key_file("cosign.key"))

# %% [markdown]
# The public half is a plain PKIX `PUBLIC KEY`: share it freely, it goes into every policy.

# %%
print(open("cosign.pub").read())

# %% [markdown]
# ## Step 2: the public key, again, from the private key
#
# `public-key` re-derives the public key from `cosign.key` (it needs the password). Lost your
# `.pub`? This is how you get it back. This time, type the command yourself, with the real cosign
# when it is installed (the `!` line runs in a shell, like JupyterLab's terminal, with your
# password in `COSIGN_PASSWORD`); `workshop.tool("cosign")` falls back to `labkit`, same flags.

# %%
cosign = workshop.tool("cosign")
!{cosign} public-key --key cosign.key --outfile cosign.pub

# %% [markdown]
# ## Step 3: import a key made elsewhere
#
# Teams often already have keys from `openssl` or a KMS export. `import-key-pair` re-encrypts an
# unencrypted PEM key into cosign's format. cosign refuses weak keys: RSA under 2048 bits, curves
# other than P-256/384/521. Both keys below come from `cryptography`, the same as `openssl genpkey`.

# %%
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def write_pem(path, key):
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


write_pem("team.pem", ec.generate_private_key(ec.SECP384R1()))      # openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384
write_pem("weak.pem", rsa.generate_private_key(65537, 1024))         # openssl genrsa 1024
workshop.run("labkit import-key-pair --key team.pem --output-key-prefix team")
workshop.run("labkit import-key-pair --key weak.pem --output-key-prefix weak")

# %% [markdown]
# **What just happened.** The P-384 key became `team.key`/`team.pub` (run the cell again and, as
# in step 1, your `team.key` is kept); the 1024-bit RSA key was refused with cosign's own message
# and exit code. The PEM files are unencrypted private keys: delete them once imported.
#
# **Why P-384 matters later.** P-384 is a larger curve than cosign's default P-256, and cosign
# signs with the hash that matches the curve: SHA-384 for P-384. Verifiers do not follow the key:
# `cosign verify` and Kyverno assume SHA-256 unless told otherwise
# (`--signature-digest-algorithm sha384`, `signatureAlgorithm: sha384`). Notebook 06's exercise
# runs into exactly this when the team key joins a policy.

# %%
for name in ("team.pem", "weak.pem"):
    os.remove(name)
print(sorted(p for p in os.listdir(".") if p.endswith((".key", ".pub"))))

# %% [markdown]
# ## Step 4: what a wrong password looks like
#
# cosign fails closed: no key, no signature, and the file is untouched.

# %%
saved = os.environ["COSIGN_PASSWORD"]
os.environ["COSIGN_PASSWORD"] = "not-the-password"
workshop.run("labkit public-key --key cosign.key")
os.environ["COSIGN_PASSWORD"] = saved

# %% [markdown]
# ## Your keys at a glance
#
# The key panel lists the pairs in the workshop directory — mode, algorithm, public key
# fingerprint — and makes new ones with a click (`generate-key-pair` underneath):

# %%
from labkit import widgets

widgets.KeyPanel()

# %%
for row in widgets.key_rows():
    print(f"{row.name:8} {row.private_mode:8} {row.algorithm:12} sha256:{row.fingerprint[:16]}…")

# %% [markdown]
# ## Checkpoint

# %%
check.keys()

# %% [markdown]
# ## Exercise
#
# Write a small file, `release-notes.txt` (File → New → Text File in the `workshop` folder, or a
# cell), sign it with `sign-blob` into `release-notes.sig` and verify it with `verify-blob`. Then
# copy it to `release-notes-tampered.txt`, change one character of the copy, and verify the copy
# with the same signature. (`--tlog-upload=false`: nothing goes to the public transparency log;
# notebook 03 explains.) Run the check when you are done.

# %% solution
with open("release-notes.txt", "w") as fh:
    fh.write("v1.0: first signed release\n")
workshop.run("labkit sign-blob --key cosign.key --tlog-upload=false --output-signature release-notes.sig release-notes.txt", show=False)
workshop.run("labkit verify-blob --key cosign.pub --insecure-ignore-tlog --signature release-notes.sig release-notes.txt")
with open("release-notes-tampered.txt", "w") as fh:
    fh.write("v1.0: first signed releasE\n")
workshop.run("labkit verify-blob --key cosign.pub --insecure-ignore-tlog --signature release-notes.sig release-notes-tampered.txt")

# %%
check.exercise_01()

# %% [markdown]
# ## Key points
# - `cosign.key` is your private key sealed with scrypt + secretbox; it is written 0600 and never shared.
# - `cosign.pub` is what verifiers and admission policies trust.
# - cosign refuses weak keys and wrong passwords with clear errors; so does labkit, word for word.
#
# Next: **02 · build and push**.
