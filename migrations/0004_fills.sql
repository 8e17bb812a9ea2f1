-- SPDX-License-Identifier: Apache-2.0
-- What was traded, beside what it cost (docs/ledger.md, "Fills"): one row per
-- fill, written in the batch that carries the fill's trade transfer and covered
-- by that batch's hash. Batches of format 2 carry their fills; batches written
-- before this migration are format 1 and keep the hash they were written with.
alter table ledger.batches
	add column format smallint not null default 1 check (format in (1, 2)),
	add column n_fills integer not null default 0 check (n_fills >= 0),
	add constraint batches_fills_need_format_2 check (format = 2 or n_fills = 0);

create table ledger.fills (
	id bigint primary key check (id between 1 and 576460752303423487), -- the engine's fill id
	batch_id bigint not null, -- exists: fills_refer below
	-- 1-63 bytes of [A-Za-z0-9._/:-] (translate: a regular expression costs
	-- settlement a sixth of its speed)
	product text not null check (octet_length(product) between 1 and 63 and
		translate(product, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/:-',
			'') = ''),
	price bigint not null check (price > 0), -- micro-units per GPU-hour
	quantity bigint not null check (quantity > 0), -- GPUs
	buyer bigint not null, -- a participant: fills_refer below
	seller bigint not null,
	aggressor text not null check (aggressor in ('buy', 'sell')), -- the taker's side
	taker_order_id bigint not null,
	maker_order_id bigint not null,
	traded_at timestamptz not null, -- the engine's clock when it matched (milliseconds)
	created_at timestamptz not null default now()
);
-- No index but the primary key: each one costs settlement 6-7% of its speed
-- (docs/performance.md, "Settlement"). Add those your queries need.

-- The fills' batch and participants exist, checked once per statement (a COPY of
-- a whole batch) rather than by a foreign key's lookup per row, which costs
-- settlement a sixth of its speed. Neither batches nor participants are ever
-- deleted (their append-only triggers), so a check at insert is as good as a key.
create function ledger.fills_refer() returns trigger
language plpgsql set search_path = pg_catalog, ledger as $$
begin
	if exists (select 1 from new_rows f
		where not exists (select 1 from ledger.batches b where b.id = f.batch_id)
			or not exists (select 1 from ledger.participants p where p.id = f.buyer)
			or not exists (select 1 from ledger.participants p where p.id = f.seller)) then
		raise exception 'ledger: a fill names a batch or a participant that does not exist'
			using errcode = 'foreign_key_violation';
	end if;
	return null;
end
$$;
create trigger fills_refer after insert on ledger.fills
	referencing new table as new_rows for each statement execute function ledger.fills_refer();

-- A batch's format never goes back: once batches carry their fills, every later
-- one does.
create function ledger.batch_format_goes_on() returns trigger
language plpgsql set search_path = pg_catalog, ledger as $$
declare
	last_format smallint;
begin
	select format into last_format from ledger.batches order by id desc limit 1;
	if found and new.format < last_format then
		raise exception 'ledger: batch % is format %, after a batch of format %',
			new.id, new.format, last_format using errcode = 'check_violation';
	end if;
	return new;
end
$$;
create trigger batches_format_goes_on before insert on ledger.batches
	for each row execute function ledger.batch_format_goes_on();

create trigger fills_append_only before update or delete on ledger.fills
	for each row execute function ledger.refuse_change();
create trigger fills_no_truncate before truncate on ledger.fills
	for each statement execute function ledger.refuse_change();

revoke all on ledger.fills from public;
grant select on ledger.fills to gridex_app, gridex_auditor;
grant insert on ledger.fills to gridex_app;
