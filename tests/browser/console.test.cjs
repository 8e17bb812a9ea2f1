// SPDX-License-Identifier: Apache-2.0
// The web console in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): every page against a server with a scripted market; the numbers
// each page shows must equal the JSON API's; screenshots (laptop and phone) go to
// the directory given. Usage: node console.test.cjs BASE_URL SCREENSHOT_DIR
// (PLAYWRIGHT_CORE: the unpacked playwright-core package). Exit 0: all pages agree.
"use strict";

const path = require("path");
const {chromium} = require(process.env.PLAYWRIGHT_CORE);

const [base, shots] = process.argv.slice(2);
let failures = 0;

function check(ok, what) {
	console.log((ok ? "ok    " : "FAIL  ") + what);
	if (!ok) failures++;
}

// As the console formats micro-units (app.js, Gridex.price).
function price(v) {
	if (v === null || v === undefined) return "–";
	const whole = Math.floor(Math.abs(v) / 1e6);
	let frac = String(Math.abs(v) % 1e6).padStart(6, "0").replace(/0+$/, "");
	if (frac.length < 2) frac = frac.padEnd(2, "0");
	return (v < 0 ? "-" : "") + whole + "." + frac;
}

async function api(p) {
	const r = await fetch(base + "/api/v1/" + p);
	if (!r.ok) throw new Error(p + ": " + r.status);
	return r.json();
}

async function ready(page, url) {
	await page.goto(base + url);
	await page.waitForSelector('body[data-ready="1"]', {timeout: 15000});
}

async function rows(page, selector) {
	return page.$$eval(selector, (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
}

(async () => {
	const browser = await chromium.launch({executablePath: "/usr/bin/chromium",
		args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]});
	const page = await browser.newPage({viewport: {width: 1280, height: 800}});
	const errors = [];
	page.on("pageerror", (e) => errors.push(e.message));
	page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

	// Overview: each product's cell shows the API's best bid, best ask and last price.
	const {products} = await api("products");
	await ready(page, "/");
	for (const p of products) {
		const cell = page.locator(`td[data-product="${p.product}"]`);
		for (const f of ["best_bid", "best_ask", "last_price"]) {
			const shown = await cell.locator(`[data-field="${f}"]`).textContent();
			check(shown === price(p[f]), `overview ${p.product} ${f}: shown ${shown}, API ${price(p[f])}`);
		}
	}
	check((await page.locator("td[data-product]").count()) === products.length,
		`overview has a cell for each of the ${products.length} products`);
	await page.screenshot({path: path.join(shots, "overview.png"), fullPage: true});

	// Product page: depth rows and the trade tape equal the API's.
	const traded = products.find((p) => p.last_price !== null);
	const book = await api("book?depth=20&product=" + encodeURIComponent(traded.product));
	const {trades} = await api("trades?limit=50&product=" + encodeURIComponent(traded.product));
	await ready(page, "/product.html?product=" + encodeURIComponent(traded.product));
	for (const side of ["bid", "ask"]) {
		const want = (side === "bid" ? book.bids : book.asks).map((l) => [price(l.price), String(l.quantity), String(l.orders)]);
		const got = (await rows(page, `table[data-side="${side}"] tbody tr[data-price]`)).map((r) => r.slice(0, 3));
		check(JSON.stringify(got) === JSON.stringify(want), `product ${side}s: shown ${JSON.stringify(got)}, API ${JSON.stringify(want)}`);
	}
	const tape = (await rows(page, 'table[data-table="trades"] tbody tr[data-sequence]')).map((r) => r.slice(1));
	const wantTape = trades.map((t) => [price(t.price), String(t.quantity), t.aggressor]);
	check(JSON.stringify(tape) === JSON.stringify(wantTape), `trade tape: shown ${JSON.stringify(tape)}, API ${JSON.stringify(wantTape)}`);
	check((await page.locator("svg.chart polyline").count()) >= 1, "depth chart drawn");
	await page.screenshot({path: path.join(shots, "product.png"), fullPage: true});

	// Price history of the class: the candle table equals the ledger's history (the server
	// has every fill settled by now), and, with /history answering 404 as a gridexd
	// without it does, the API's candles of the trades kept.
	const cls = traded.accelerator;
	const q = "interval_ms=60000&accelerator=" + encodeURIComponent(cls);
	const shownCandles = async (source) => {
		await ready(page, "/history.html?" + q);
		check(await page.locator(`p[data-source="${source}"]`).count() === 1, `history page says its source: ${source}`);
		return (await rows(page, 'table[data-table="candles"] tbody tr[data-start]')).map((r) => r.slice(1));
	};
	const asShown = (candles) => candles.map((c) => [c.open, c.high, c.low, c.close, c.vwap].map(price).concat([String(c.volume)]));
	const fromLedger = asShown((await api("history?" + q)).candles);
	const fromKept = asShown((await api("candles?limit=200&" + q)).candles);
	check(fromLedger.length > 0 && JSON.stringify(fromLedger) === JSON.stringify(fromKept),
		`history: the ledger's candles ${JSON.stringify(fromLedger)} equal the kept ones ${JSON.stringify(fromKept)}`);
	let got = await shownCandles("ledger");
	check(JSON.stringify(got) === JSON.stringify(fromLedger),
		`history candles (ledger): shown ${JSON.stringify(got)}, API ${JSON.stringify(fromLedger)}`);
	await page.screenshot({path: path.join(shots, "history.png"), fullPage: true});
	await page.route("**/api/v1/history?*", (route) => route.fulfill({status: 404,
		contentType: "application/json", body: '{"error":"price history is off"}'}));
	got = await shownCandles("kept");
	check(JSON.stringify(got) === JSON.stringify(fromKept),
		`history candles (kept): shown ${JSON.stringify(got)}, API ${JSON.stringify(fromKept)}`);
	await page.unroute("**/api/v1/history?*");
	// Chromium reports the 404 as a console error: the one expected.
	const expected = errors.findIndex((e) => e.includes("404"));
	if (expected >= 0) errors.splice(expected, 1);

	// Operator page: after the token, the trial balance equals the operator endpoint's.
	const token = process.env.GRIDEX_OPERATOR_TOKEN;
	const lr = await fetch(base + "/api/v1/operator/ledger", {headers: {Authorization: "Bearer " + token}});
	const ledger = await lr.json();
	check(lr.ok && ledger.currencies !== undefined, "operator ledger endpoint: " + JSON.stringify(ledger).slice(0, 200));
	await page.goto(base + "/operator.html");
	await page.fill("#token", token);
	await page.click("button[type=submit]");
	await page.waitForSelector('body[data-ready="1"]', {timeout: 15000});
	for (const [ccy, c] of Object.entries(ledger.currencies || {})) {
		for (const [kind, v] of Object.entries(c.kinds)) {
			const shown = await page.locator(`table[data-currency="${ccy}"] tr[data-kind="${kind}"] td`).nth(2).textContent();
			check(shown === price(v.balance), `operator ${ccy} ${kind}: shown ${shown}, API ${price(v.balance)}`);
		}
	}
	for (const p of ledger.participants || []) {
		const shown = await page.locator(`tr[data-participant="${p.id}"] td`).nth(3).textContent();
		check(shown === price(p.available), `operator participant ${p.name}: shown ${shown}, API ${price(p.available)}`);
	}
	await page.screenshot({path: path.join(shots, "operator.png"), fullPage: true});

	// A phone: the overview still shows every product's prices (scrolling sideways).
	const phone = await browser.newPage({viewport: {width: 375, height: 667}, isMobile: true});
	await ready(phone, "/");
	check((await phone.locator("td[data-product]").count()) === products.length, "phone overview: every product");
	await phone.screenshot({path: path.join(shots, "overview-phone.png"), fullPage: true});

	check(errors.length === 0, "no script errors: " + JSON.stringify(errors));
	await browser.close();
	process.exit(failures ? 1 : 0);
})().catch((e) => {
	console.log("FAIL  " + (e && e.stack ? e.stack : e));
	process.exit(1);
});
