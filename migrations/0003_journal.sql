-- SPDX-License-Identifier: Apache-2.0
-- Written once by gridexd when it starts its journal (docs/durability.md). From
-- then on the journal is the source of truth for balances and every money
-- movement goes through it: gridex-admin refuses deposits, withdrawals and
-- participants while this row exists (use signed operator requests).
create table ledger.journal_genesis (
	id smallint primary key default 1 check (id = 1),
	seq_base bigint not null check (seq_base >= 0),
	created_at timestamptz not null default now()
);
create trigger journal_genesis_append_only before update or delete on ledger.journal_genesis
	for each row execute function ledger.refuse_change();
create trigger journal_genesis_no_truncate before truncate on ledger.journal_genesis
	for each statement execute function ledger.refuse_change();

revoke all on ledger.journal_genesis from public;
grant select on ledger.journal_genesis to gridex_app, gridex_auditor;
grant insert on ledger.journal_genesis to gridex_app;
