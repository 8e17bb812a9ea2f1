-- SPDX-License-Identifier: Apache-2.0
-- The Ed25519 public key each participant signs its requests with, recorded
-- by gridexd when the operator registers the participant (docs/protocol.md,
-- "Operator requests"). gridexd loads participants, keys and balances from
-- here when it starts. Append-only: a key is never changed in place.
create table ledger.participant_keys (
	participant bigint primary key references ledger.participants,
	public_key bytea not null check (length(public_key) = 32),
	created_at timestamptz not null default now()
);
create trigger participant_keys_append_only before update or delete on ledger.participant_keys
	for each row execute function ledger.refuse_change();
create trigger participant_keys_no_truncate before truncate on ledger.participant_keys
	for each statement execute function ledger.refuse_change();

revoke all on ledger.participant_keys from public;
grant select on ledger.participant_keys to gridex_app, gridex_auditor;
grant insert on ledger.participant_keys to gridex_app;
