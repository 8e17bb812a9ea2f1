/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gridex-admin: operator commands for the ledger (docs/ledger.md).
 *   migrate, participant, deposit, withdraw, balance, audit
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "ledger.h"

#ifndef GRIDEX_MIGRATIONS_DIR
#define GRIDEX_MIGRATIONS_DIR "migrations"
#endif
#ifndef GRIDEX_SOURCE_MIGRATIONS_DIR
#define GRIDEX_SOURCE_MIGRATIONS_DIR "migrations"
#endif

static const char usage_text[] =
	"usage: gridex-admin [--database=URL] [--currency=USD] COMMAND [ARGS]\n"
	"\n"
	"  migrate [--dir=DIR]              apply pending migrations (as the schema owner)\n"
	"  participant ID NAME [--key=HEX]  open participant ID (the engine account) with an\n"
	"                                   AVAILABLE account and, with --key, the Ed25519\n"
	"                                   public key (64 hex digits) it signs requests with\n"
	"  deposit ID AMOUNT [--action=N]   BANK -> AVAILABLE of participant ID\n"
	"  withdraw ID AMOUNT [--action=N]  AVAILABLE of participant ID -> BANK\n"
	"  balance ID                       AVAILABLE balance of participant ID\n"
	"  audit                            check every invariant (connect as gridex_auditor)\n"
	"\n"
	"AMOUNT is in currency units with up to 6 decimals (12.5 = 12500000 micro-units).\n"
	"--action names the operator action; repeating an action is refused, never\n"
	"applied twice (default: the next unused number).\n"
	"While gridexd runs, register participants and move money with signed operator\n"
	"requests instead (docs/operations.md): gridexd owns the ledger's batch numbers.\n"
	"The database URL defaults to $GRIDEX_DATABASE_URL.\n"
	"Exit status: 0 success, 1 failure (or a failed audit check), 2 usage.\n";

static _Noreturn void usage(const char *why)
{
	fprintf(stderr, "gridex-admin: %s\n\n%s", why, usage_text);
	exit(2);
}

static int fail(struct ledger *l, int rc, const char *what)
{
	fprintf(stderr, "gridex-admin: %s: %s%s%s\n", what, ledger_status_name(rc),
		l && ledger_error(l)[0] ? ": " : "", l ? ledger_error(l) : "");
	ledger_close(l);
	return 1;
}

static void report_migration(int version, const char *name, bool applied, void *ctx)
{
	(void)ctx;
	printf("%04d %s: %s\n", version, name, applied ? "applied" : "already applied");
}

static void report_check(bool ok, const char *check, const char *detail, void *ctx)
{
	(void)ctx;
	printf("%-4s %s (%s)\n", ok ? "ok" : "FAIL", check, detail);
}

static bool parse_u32(const char *s, uint32_t *out)
{
	char *end;
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end || v == 0 || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

static int cmd_migrate(const char *url, const char *dir)
{
	char err[1024];
	if (dir == NULL) {
		FILE *probe = fopen(GRIDEX_MIGRATIONS_DIR "/0001_ledger.sql", "r");
		dir = probe ? GRIDEX_MIGRATIONS_DIR : GRIDEX_SOURCE_MIGRATIONS_DIR;
		if (probe)
			fclose(probe);
	}
	int rc = ledger_migrate(url, dir, report_migration, NULL, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "gridex-admin: migrate: %s: %s\n", ledger_status_name(rc), err);
		return 1;
	}
	return 0;
}

/* Connects and takes the writer lock, which gridexd holds while it runs. */
static int open_locked(const char *url, const char *currency, struct ledger **l)
{
	bool got = false;
	int rc = ledger_open(url, currency, l);
	if (rc == LEDGER_OK)
		rc = ledger_try_lock(*l, &got);
	if (rc)
		return rc;
	if (!got) {
		fprintf(stderr,
			"gridex-admin: gridexd (or another gridex-admin) is writing to this "
			"ledger; while gridexd runs, register participants and move money "
			"with signed operator requests (docs/protocol.md)\n");
		ledger_close(*l);
		*l = NULL;
		return -1;
	}
	bool journal = false;
	rc = ledger_journal_started(*l, &journal);
	if (rc)
		return rc;
	if (journal) {
		fprintf(stderr,
			"gridex-admin: gridexd's journal owns this ledger (balances come from "
			"the journal): register participants and move money with signed "
			"operator requests (docs/protocol.md)\n");
		ledger_close(*l);
		*l = NULL;
		return -1;
	}
	return LEDGER_OK;
}

static int cmd_move(const char *url, const char *currency, bool deposit, char **args, int nargs,
		    int64_t action)
{
	uint32_t participant;
	int64_t amount, account, batch;
	if (nargs != 2 || !parse_u32(args[0], &participant))
		usage("deposit and withdraw need a participant id and an amount");
	int prc = ledger_parse_amount(args[1], &amount);
	if (prc)
		usage("AMOUNT must be a positive number with at most 6 decimals");
	struct ledger *l = NULL;
	int rc = open_locked(url, currency, &l);
	if (rc < 0)
		return 1;
	if (rc)
		return fail(l, rc, "connect");
	if ((rc = ledger_participant_account(l, participant, &account)) != 0)
		return fail(l, rc, "participant");
	if (action == 0 && (rc = ledger_next_action(l, &action)) != 0)
		return fail(l, rc, "action number");
	if ((rc = ledger_last_batch(l, &batch)) != 0)
		return fail(l, rc, "ledger");
	struct ledger_accounts acc;
	ledger_exchange_accounts(l, &acc);
	struct ledger_transfer t = {
		.id = LEDGER_OPERATOR_ID_BASE + action,
		.debit_account = deposit ? acc.bank : account,
		.credit_account = deposit ? account : acc.bank,
		.amount = amount,
		.code = deposit ? LEDGER_DEPOSIT : LEDGER_WITHDRAWAL,
	};
	rc = ledger_post(l, batch + 1, &t, 1);
	if (rc == LEDGER_ERR_REFUSED && !deposit)
		return fail(l, rc, "withdraw (more than the available balance?)");
	if (rc)
		return fail(l, rc, deposit ? "deposit" : "withdraw");
	int64_t balance = 0;
	if ((rc = ledger_balance(l, account, &balance)) != 0)
		return fail(l, rc, "balance");
	printf("%s %" PRId64 " micro-units, action %" PRId64 ", batch %" PRId64
	       "; participant %u now has %" PRId64 "\n",
	       deposit ? "deposited" : "withdrew", amount, action, batch + 1, participant, balance);
	ledger_close(l);
	return 0;
}

int main(int argc, char **argv)
{
	const char *url = getenv("GRIDEX_DATABASE_URL"), *currency = "USD", *dir = NULL;
	int64_t action = 0;
	const char *key_hex = NULL;
	char *args[8];
	int nargs = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage_text, stdout);
			return 0;
		} else if (strncmp(a, "--database=", 11) == 0) {
			url = a + 11;
		} else if (strncmp(a, "--currency=", 11) == 0) {
			currency = a + 11;
		} else if (strncmp(a, "--key=", 6) == 0) {
			key_hex = a + 6;
		} else if (strncmp(a, "--dir=", 6) == 0) {
			dir = a + 6;
		} else if (strncmp(a, "--action=", 9) == 0) {
			char *end;
			action = strtoll(a + 9, &end, 10);
			if (*end || a[9] < '1' || a[9] > '9' || action < 1 ||
			    action > LEDGER_ACTION_ID_MAX)
				usage("--action needs a positive integer");
		} else if (a[0] == '-') {
			usage("unknown option");
		} else if (nargs < 8) {
			args[nargs++] = argv[i];
		} else {
			usage("too many arguments");
		}
	}
	if (nargs == 0)
		usage("no command");
	if (url == NULL || *url == '\0')
		usage("no database: set GRIDEX_DATABASE_URL or pass --database=URL");
	const char *cmd = args[0];
	if (strcmp(cmd, "migrate") == 0) {
		if (nargs != 1)
			usage("migrate takes no arguments");
		return cmd_migrate(url, dir);
	}
	if (strcmp(cmd, "participant") == 0) {
		uint32_t id;
		if (nargs != 3 || !parse_u32(args[1], &id))
			usage("participant needs an id (1 .. 4294967295) and a name");
		uint8_t key[32];
		size_t key_len = 0;
		if (key_hex && (sodium_init() < 0 ||
				sodium_hex2bin(key, sizeof(key), key_hex, strlen(key_hex), NULL,
					       &key_len, NULL) != 0 ||
				key_len != 32 || key_hex[64] != '\0' ||
				!crypto_core_ed25519_is_valid_point(key)))
			usage("--key needs a valid Ed25519 public key in 64 hex digits");
		struct ledger *l = NULL;
		int rc = open_locked(url, currency, &l);
		if (rc < 0)
			return 1;
		if (rc == LEDGER_OK)
			rc = ledger_add_participant(l, id, args[2]);
		if (rc == LEDGER_OK && key_hex)
			rc = ledger_register_key(l, id, key);
		if (rc)
			return fail(l, rc, "participant");
		printf("participant %u %s has a %s account\n", id, args[2], currency);
		ledger_close(l);
		return 0;
	}
	if (strcmp(cmd, "deposit") == 0 || strcmp(cmd, "withdraw") == 0)
		return cmd_move(url, currency, cmd[0] == 'd', args + 1, nargs - 1, action);
	if (strcmp(cmd, "balance") == 0) {
		uint32_t id;
		int64_t account, balance;
		if (nargs != 2 || !parse_u32(args[1], &id))
			usage("balance needs a participant id");
		struct ledger *l = NULL;
		int rc = ledger_open(url, currency, &l);
		if (rc == LEDGER_OK)
			rc = ledger_participant_account(l, id, &account);
		if (rc == LEDGER_OK)
			rc = ledger_balance(l, account, &balance);
		if (rc)
			return fail(l, rc, "balance");
		printf("%" PRId64 "\n", balance);
		ledger_close(l);
		return 0;
	}
	if (strcmp(cmd, "audit") == 0) {
		char err[1024];
		int failed = 0;
		int rc = ledger_audit(url, report_check, NULL, &failed, err, sizeof(err));
		if (rc) {
			fprintf(stderr, "gridex-admin: audit: %s: %s\n", ledger_status_name(rc),
				err);
			return 1;
		}
		return failed ? 1 : 0;
	}
	usage("unknown command");
}
