"""Trust: keys (cosign and PKCS#8 formats), attestations (in-toto, DSSE) and SBOMs."""
