/* SPDX-License-Identifier: Apache-2.0 */
/* Key files: Ed25519 private keys as PEM PKCS#8, the format of
 * `openssl genpkey -algorithm ed25519`, read and written through OpenSSL. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include "gridex/gridex.h"
#include "gridex_internal.h"

int gridex_key_seed(const char *path, uint8_t seed[32], char *err, size_t err_len)
{
	FILE *f = path ? fopen(path, "r") : NULL;
	if (f == NULL) {
		snprintf(err, err_len, "key file %s: %s", path ? path : "(none)", strerror(errno));
		return GRIDEX_ERR_KEY;
	}
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	size_t len = 32;
	int rc = GRIDEX_OK;
	if (k == NULL || EVP_PKEY_get_id(k) != EVP_PKEY_ED25519 ||
	    EVP_PKEY_get_raw_private_key(k, seed, &len) != 1 || len != 32) {
		snprintf(err, err_len, "key file %s: not a PEM Ed25519 private key", path);
		rc = GRIDEX_ERR_KEY;
	}
	EVP_PKEY_free(k);
	return rc;
}

int gridex_keygen(const char *path, uint8_t pub[32])
{
	if (path == NULL || pub == NULL || sodium_init() < 0)
		return GRIDEX_ERR_ARGS;
	uint8_t pk[32], sk[64];
	crypto_sign_keypair(pk, sk);
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk, 32);
	sodium_memzero(sk, sizeof(sk));
	if (k == NULL)
		return GRIDEX_ERR_KEY;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	int rc = GRIDEX_ERR_KEY;
	if (f && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1)
		rc = GRIDEX_OK;
	if (f) {
		if (fclose(f) != 0)
			rc = GRIDEX_ERR_KEY;
	} else if (fd >= 0) {
		close(fd);
	}
	EVP_PKEY_free(k);
	if (rc == GRIDEX_OK)
		memcpy(pub, pk, 32);
	else if (fd >= 0)
		unlink(path);
	return rc;
}

int gridex_key_public(const char *path, uint8_t pub[32])
{
	uint8_t seed[32], sk[64];
	char err[256];
	if (sodium_init() < 0)
		return GRIDEX_ERR_KEY;
	int rc = gridex_key_seed(path, seed, err, sizeof(err));
	if (rc)
		return rc;
	crypto_sign_seed_keypair(pub, sk, seed);
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
	return GRIDEX_OK;
}
