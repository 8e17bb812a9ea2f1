-- SPDX-License-Identifier: Apache-2.0
-- 0001: the double-entry ledger (docs/ledger.md). Every invariant the money
-- depends on is enforced here, by the database, whatever the client does.
-- Applied by `gridex-admin migrate` inside one transaction, as the owner role.

-- Roles: created when missing (needs CREATEROLE; in production a DBA may
-- create them beforehand and set passwords).
do $$
begin
	if not exists (select 1 from pg_roles where rolname = 'gridex_app') then
		create role gridex_app login;
	end if;
	if not exists (select 1 from pg_roles where rolname = 'gridex_auditor') then
		create role gridex_auditor login;
	end if;
end
$$;
alter role gridex_auditor set default_transaction_read_only = on;

create schema ledger;
revoke all on schema ledger from public;
grant usage on schema ledger to gridex_app, gridex_auditor;

-- Currencies: amounts are integers in units of 10^-scale (micro-units).
create table ledger.currencies (
	code text primary key check (code ~ '^[A-Z]{3,8}$'),
	scale smallint not null check (scale between 0 and 9)
);
insert into ledger.currencies values ('USD', 6);

create table ledger.participants (
	id bigint primary key check (id > 0 and id < 4294967296), -- the engine's u32 account
	name text not null unique check (name ~ '^[A-Za-z0-9._-]{1,31}$'),
	created_at timestamptz not null default now()
);

-- Balances follow one sign convention for every account: credits minus debits.
-- AVAILABLE, FEES and ESCROW hold money and never go negative; BANK is the
-- outside world, negative by the money deposited into the exchange.
create table ledger.accounts (
	id bigint generated always as identity primary key,
	currency text not null references ledger.currencies,
	kind text not null check (kind in ('AVAILABLE', 'FEES', 'ESCROW', 'BANK')),
	participant bigint references ledger.participants,
	balance bigint not null default 0,
	created_at timestamptz not null default now(),
	unique (id, currency),
	constraint accounts_available_has_participant
		check ((kind = 'AVAILABLE') = (participant is not null)),
	constraint accounts_no_overdraft check (kind = 'BANK' or balance >= 0)
);
create unique index accounts_one_per_owner
	on ledger.accounts (currency, kind, coalesce(participant, 0));

-- Settlement batches, chained: hash = SHA-256(prev_hash || batch || its rows),
-- computed by the writer (ledger/ledger.c) and recomputed by the audit.
create table ledger.batches (
	id bigint primary key check (id > 0), -- engine sequence number of its last input
	n_transfers integer not null check (n_transfers >= 0),
	prev_hash bytea not null check (length(prev_hash) = 32),
	hash bytea not null unique check (length(hash) = 32),
	created_at timestamptz not null default now()
);

create table ledger.transfers (
	id bigint primary key check (id > 0), -- derived from its origin; see docs/ledger.md
	currency text not null,
	debit_account bigint not null,
	credit_account bigint not null,
	amount bigint not null check (amount > 0),
	code text not null check (code in
		('deposit', 'withdrawal', 'trade', 'fee', 'escrow_release', 'refund')),
	batch_id bigint not null references ledger.batches,
	fill_id bigint,
	taker_order_id bigint,
	maker_order_id bigint,
	lease_id bigint,
	created_at timestamptz not null default now(),
	constraint transfers_two_accounts check (debit_account <> credit_account),
	-- A transfer never crosses currencies: both accounts are in its currency.
	foreign key (debit_account, currency) references ledger.accounts (id, currency),
	foreign key (credit_account, currency) references ledger.accounts (id, currency)
);
create index transfers_debit on ledger.transfers (debit_account, id);
create index transfers_credit on ledger.transfers (credit_account, id);
create index transfers_batch on ledger.transfers (batch_id);
create index transfers_fill on ledger.transfers (fill_id) where fill_id is not null;

-- Balances change only here: once per INSERT or COPY statement, every touched
-- account is locked in id order (no deadlocks between writers) and updated
-- once with its net change, so a batch of fills touches the hot FEES and
-- ESCROW rows once. The CHECKs on accounts refuse overdrafts, which aborts the
-- whole statement.
create function ledger.apply_transfers() returns trigger
language plpgsql security definer set search_path = pg_catalog, ledger as $$
begin
	perform 1 from ledger.accounts a
	where a.id in (select debit_account from new_rows union select credit_account from new_rows)
	order by a.id for update;
	update ledger.accounts a set balance = a.balance + d.delta
	from (
		select account, sum(delta)::bigint as delta from (
			select credit_account as account, amount as delta from new_rows
			union all
			select debit_account, -amount from new_rows
		) x group by account
	) d
	where a.id = d.account and d.delta <> 0;
	return null;
end
$$;
create trigger transfers_apply after insert on ledger.transfers
	referencing new table as new_rows for each statement execute function ledger.apply_transfers();

-- New accounts start at zero; balances move only through transfers.
create function ledger.account_opens_empty() returns trigger
language plpgsql set search_path = pg_catalog, ledger as $$
begin
	if new.balance <> 0 then
		raise exception 'ledger: an account opens with balance 0 (got %)', new.balance
			using errcode = 'check_violation';
	end if;
	return new;
end
$$;
create trigger accounts_open_empty before insert on ledger.accounts
	for each row execute function ledger.account_opens_empty();

-- Batches join the chain in order: ids increase and prev_hash is the last hash.
create function ledger.batch_extends_chain() returns trigger
language plpgsql set search_path = pg_catalog, ledger as $$
declare
	last record;
begin
	perform pg_advisory_xact_lock(724301);
	select id, hash into last from ledger.batches order by id desc limit 1;
	if found and new.id <= last.id then
		raise exception 'ledger: batch % is not after batch %', new.id, last.id
			using errcode = 'unique_violation';
	end if;
	if new.prev_hash <> coalesce(last.hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) then
		raise exception 'ledger: batch % does not extend the hash chain', new.id
			using errcode = 'check_violation';
	end if;
	return new;
end
$$;
create trigger batches_extend_chain before insert on ledger.batches
	for each row execute function ledger.batch_extends_chain();

-- Append-only: history is never rewritten, not even by the owner.
create function ledger.refuse_change() returns trigger
language plpgsql as $$
begin
	raise exception 'ledger: % is append-only (% refused)', tg_table_name, tg_op
		using errcode = 'insufficient_privilege';
end
$$;
create trigger transfers_append_only before update or delete on ledger.transfers
	for each row execute function ledger.refuse_change();
create trigger transfers_no_truncate before truncate on ledger.transfers
	for each statement execute function ledger.refuse_change();
create trigger batches_append_only before update or delete on ledger.batches
	for each row execute function ledger.refuse_change();
create trigger batches_no_truncate before truncate on ledger.batches
	for each statement execute function ledger.refuse_change();
create trigger participants_append_only before update or delete on ledger.participants
	for each row execute function ledger.refuse_change();
create trigger participants_no_truncate before truncate on ledger.participants
	for each statement execute function ledger.refuse_change();
create trigger accounts_no_delete before delete on ledger.accounts
	for each row execute function ledger.refuse_change();
create trigger accounts_no_truncate before truncate on ledger.accounts
	for each statement execute function ledger.refuse_change();

-- The exchange's own accounts.
insert into ledger.accounts (currency, kind) values
	('USD', 'FEES'), ('USD', 'ESCROW'), ('USD', 'BANK');

-- ---------- audit views ----------

-- Trial balance: per currency and account kind; debits and credits tie and
-- balances sum to zero per currency.
create view ledger.trial_balance as
select a.currency, a.kind, count(*) as accounts, sum(a.balance)::bigint as balance,
	coalesce(sum(d.total), 0)::bigint as debits, coalesce(sum(c.total), 0)::bigint as credits
from ledger.accounts a
left join (select debit_account as id, sum(amount) as total from ledger.transfers group by 1) d
	on d.id = a.id
left join (select credit_account as id, sum(amount) as total from ledger.transfers group by 1) c
	on c.id = a.id
group by a.currency, a.kind;

-- Every transfer of every account, with the running balance after it.
create view ledger.account_statement as
select x.account, x.transfer, x.created_at, x.code, x.counterparty, x.delta,
	sum(x.delta) over (partition by x.account order by x.transfer)::bigint as balance_after,
	x.batch_id, x.fill_id, x.lease_id
from (
	select credit_account as account, id as transfer, created_at, code,
		debit_account as counterparty, amount as delta, batch_id, fill_id, lease_id
	from ledger.transfers
	union all
	select debit_account, id, created_at, code, credit_account, -amount, batch_id, fill_id,
		lease_id
	from ledger.transfers
) x;

-- An account's balance at a moment: the sum of its transfers up to it.
create function ledger.balance_as_of(account bigint, at timestamptz) returns bigint
language sql stable set search_path = pg_catalog, ledger as $$
	select coalesce(sum(case when credit_account = account then amount else -amount end), 0)::bigint
	from ledger.transfers
	where (credit_account = account or debit_account = account) and created_at <= at
$$;

-- Fees earned per day and currency.
create view ledger.fees_per_day as
select t.currency, date_trunc('day', t.created_at) as day, count(*) as transfers,
	sum(t.amount)::bigint as fees
from ledger.transfers t join ledger.accounts a on a.id = t.credit_account
where t.code = 'fee' and a.kind = 'FEES'
group by 1, 2;

-- ---------- privileges ----------
revoke all on all tables in schema ledger from public;
grant select on all tables in schema ledger to gridex_app, gridex_auditor;
grant insert on ledger.participants, ledger.accounts, ledger.batches, ledger.transfers
	to gridex_app;
grant execute on function ledger.balance_as_of(bigint, timestamptz) to gridex_app, gridex_auditor;
revoke execute on function ledger.apply_transfers() from public;
