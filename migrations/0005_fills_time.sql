-- SPDX-License-Identifier: Apache-2.0
-- Price history from the ledger (docs/http-api.md, "history"): the HTTP API's
-- candles over any range of time read the fills traded in that range. Fills
-- are written in the order they were traded, so a BRIN index on traded_at (the
-- lowest and highest time of each run of pages) narrows a range to the pages
-- that hold it, for a few kilobytes per million fills and next to nothing on
-- settlement's COPY (docs/performance.md, "Settlement"); a B-tree on the same
-- column costs settlement 6-7% of its speed. autosummarize: the pages filled
-- since the last vacuum are summarized as soon as each run is full, not only
-- by the next vacuum (unsummarized pages are read by every range).
create index fills_traded_at on ledger.fills using brin (traded_at)
	with (pages_per_range = 32, autosummarize = on);
