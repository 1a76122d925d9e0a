// The inspection dashboard (终本智能巡查): reads /v1/inspection/* with the user's bearer token and
// draws tables and SVG charts itself. Nothing is fetched from anywhere but this listener; the
// token lives in this tab's sessionStorage only. Chinese first, English on the switch (the same
// saved choice as the public verification page).

const TOKEN_KEY = "courtledger.dashboard.token";
const LANG_KEY = "courtledger.lang";
const SEVERITIES = ["CRIT", "HIGH", "MED", "INFO"];
const SEV_COLOURS = { CRIT: "#a11212", HIGH: "#d9822b", MED: "#e0b100", INFO: "#6b8fc7" };
const DAY = 86400000;
const BEIJING = 8 * 3600000;
const SVGNS = "http://www.w3.org/2000/svg";

const STRINGS = {
  zh: {
    "brand": "法院区块链存证", "title": "终本智能巡查", "sep": "：",
    "lang.switch": "English", "lang.switch.label": "Switch to English", "signout": "退出",
    "signin.title": "登录巡查看板",
    "signin.intro": "巡查看板只向持有身份令牌的法院工作人员显示案件数据。请输入您的访问令牌（courtledger init 写在 keys/<身份>.token 中）。令牌只保存在本标签页中。",
    "signin.label": "访问令牌", "signin.submit": "进入",
    "signin.empty": "请输入访问令牌。", "signin.bad": "令牌无效：节点拒绝了它（HTTP 401）。",
    "overview.title": "终本案件智能巡查与节点期限预警",
    "status": "已巡查至区块高度 {h}（账本高度 {ah}）· 巡查时间 {now}（北京时间）· {cases} 件案件 · 规则集 {ruleset} · 节假日历 {calendar}",
    "status.report": " · 最近链上巡查报告：区块 {h}，{count} 条发现",
    "filter.court": "法院", "filter.rule": "规则", "filter.severity": "严重程度", "filter.kind": "类别",
    "all": "全部", "kind.violation": "违规", "kind.warning": "预警",
    "sev.CRIT": "严重", "sev.HIGH": "高", "sev.MED": "中", "sev.INFO": "提示",
    "card.sev": "{sev}（{code}）", "card.warn": "期限预警", "card.closed": "终本结案 / 不规范",
    "share.title": "各法院终本案件不规范结案占比",
    "share.note": "终本结案的案件中，违反终本条件（ZB-01 至 ZB-23）至少一项的比例。",
    "share.none": "无终本案件", "share.label": "{k}/{n} 件 · {p}",
    "time.title": "按立案月份的问题数", "time.note": "符合筛选条件的违规与预警，按案件立案月份统计、按严重程度堆叠。", "time.info": "包括提示（INFO，如入链前历史的补录）",
    "deadlines.title": "期限预警（按到期日排序）",
    "deadlines.none": "当前没有期限预警。",
    "overdue": "已逾期 {d} 天", "due.today": "今日到期", "due.in": "{d} 天后到期",
    "courts.title": "按法院", "rules.title": "按规则",
    "findings.title": "巡查发现", "findings.count": "共 {n} 条，按严重程度排列，显示前 {m} 条。", "findings.none": "没有符合条件的发现。", "findings.more": "显示更多",
    "col.court": "法院", "col.cases": "案件", "col.closed": "终本", "col.improper": "不规范",
    "col.share": "占比", "col.crit": "严重违规", "col.warn": "预警", "col.rule": "规则",
    "col.sev": "程度", "col.msg": "说明", "col.cite": "依据", "col.viol": "违规",
    "col.case": "案号", "col.due": "到期日", "col.state": "状态", "col.kind": "类别",
    "col.time": "业务时间", "col.item": "内容", "col.height": "区块高度", "col.block_time": "上链时间",
    "col.proof": "证明", "col.entry": "条目",
    "case.back": "← 返回总览", "case.findings": "本案巡查发现", "case.timeline": "链上时间线",
    "case.timeline.note": "文书、事件与现场证据，按业务时间排序；高亮的条目被巡查发现引用。“已共签”表示该区块已有法院法定多数共同签名的检查点，可出具收据。",
    "case.sub": "{court} · {n} 个链上条目 · {f} 条发现 · 已巡查至区块 {h}，已共签至区块 {c}",
    "case.clean": "本案目前没有巡查发现。",
    "case.cited": "证据条目：", "case.due": "到期日：{d}", "case.provisional": "（节假日历未覆盖该年份，暂按周末计算）",
    "kindname.document": "文书", "kindname.event": "事件", "kindname.evidence": "证据",
    "proof.cosigned": "已共签", "proof.committed": "已上链待共签",
    "error.load": "无法读取巡查数据：{detail}",
    "footer": "巡查结果由本节点的巡查引擎依据链上记录计算；报告节点定期将结果摘要签名上链，任何人可用 courtledger inspect --reproduce 复核。",
  },
  en: {
    "brand": "Court evidence ledger", "title": "Closed-case inspection", "sep": ": ",
    "lang.switch": "中文", "lang.switch.label": "切换到中文", "signout": "Sign out",
    "signin.title": "Sign in to the inspection dashboard",
    "signin.intro": "The dashboard shows case data only to court staff holding an identity token. Enter your access token (courtledger init writes it to keys/<identity>.token). It is kept in this tab only.",
    "signin.label": "Access token", "signin.submit": "Open",
    "signin.empty": "Enter an access token.", "signin.bad": "Invalid token: the node refused it (HTTP 401).",
    "overview.title": "Closed-case (终本) inspection and flow-node deadline warnings",
    "status": "Inspected up to block {h} (ledger at {ah}) · inspection time {now} (Beijing) · {cases} cases · rule set {ruleset} · holiday calendar {calendar}",
    "status.report": " · latest on-chain report: block {h}, {count} findings",
    "filter.court": "Court", "filter.rule": "Rule", "filter.severity": "Severity", "filter.kind": "Kind",
    "all": "All", "kind.violation": "Violation", "kind.warning": "Warning",
    "sev.CRIT": "Critical", "sev.HIGH": "High", "sev.MED": "Medium", "sev.INFO": "Info",
    "card.sev": "{sev} ({code})", "card.warn": "Deadline warnings", "card.closed": "Closed (终本) / improper",
    "share.title": "Share of improperly closed cases, by court",
    "share.note": "Of the cases closed by 终本, the share violating at least one closure condition (ZB-01 to ZB-23).",
    "share.none": "no closed cases", "share.label": "{k}/{n} · {p}",
    "time.title": "Findings by month of filing", "time.note": "The violations and warnings matching the filters, by the month their case was filed, stacked by severity.", "time.info": "Include INFO (e.g. history entered before the court joined the chain)",
    "deadlines.title": "Deadline warnings (soonest first)",
    "deadlines.none": "No deadline warnings now.",
    "overdue": "{d} days overdue", "due.today": "due today", "due.in": "due in {d} days",
    "courts.title": "By court", "rules.title": "By rule",
    "findings.title": "Findings", "findings.count": "{n} in all, gravest first; the first {m} shown.", "findings.none": "No findings match.", "findings.more": "Show more",
    "col.court": "Court", "col.cases": "Cases", "col.closed": "Closed", "col.improper": "Improper",
    "col.share": "Share", "col.crit": "Critical", "col.warn": "Warnings", "col.rule": "Rule",
    "col.sev": "Severity", "col.msg": "Message", "col.cite": "Citation", "col.viol": "Violations",
    "col.case": "Case", "col.due": "Due", "col.state": "State", "col.kind": "Kind",
    "col.time": "Business time", "col.item": "What", "col.height": "Block", "col.block_time": "Recorded",
    "col.proof": "Proof", "col.entry": "Entry",
    "case.back": "← Back to overview", "case.findings": "Findings of this case", "case.timeline": "Timeline on chain",
    "case.timeline.note": "Documents, events and on-site evidence in business-time order; highlighted entries are cited by a finding. “Cosigned” means the block has a checkpoint signed by a quorum of courts, so a receipt can be issued.",
    "case.sub": "{court} · {n} entries on chain · {f} findings · inspected up to block {h}, cosigned up to block {c}",
    "case.clean": "No findings for this case now.",
    "case.cited": "Evidence entries: ", "case.due": "Due: {d}", "case.provisional": " (the holiday calendar does not cover that year yet: weekends only)",
    "kindname.document": "Document", "kindname.event": "Event", "kindname.evidence": "Evidence",
    "proof.cosigned": "cosigned", "proof.committed": "committed, awaiting cosignatures",
    "error.load": "Cannot read the inspection data: {detail}",
    "footer": "Findings are computed by this node's inspection engine from the chain; the reporter node signs a digest of them onto the chain, which anyone can check with courtledger inspect --reproduce.",
  },
};

// Event types of domain/events.md, for people.
const EVENTS = {
  CASE_FILED: ["立案", "Case filed"], HANDLER_ASSIGNED: ["分案", "Handler assigned"],
  APPLICANT_NOTIFIED: ["告知申请执行人", "Applicant notified"],
  PROPERTY_REPORT_ORDER_ISSUED: ["发出报告财产令", "Property-report order issued"],
  PROPERTY_REPORT_ORDER_SERVED: ["送达报告财产令", "Property-report order served"],
  EXEC_NOTICE_ISSUED: ["发出执行通知书", "Execution notice issued"],
  EXEC_NOTICE_SERVED: ["送达执行通知书", "Execution notice served"],
  NET_INQUIRY_REQUESTED: ["网络查控发起", "Online asset inquiry requested"],
  NET_INQUIRY_FEEDBACK: ["网络查控反馈", "Online inquiry feedback"],
  CONSUMPTION_RESTRICTED: ["限制消费", "Consumption restricted"],
  PROPERTY_REPORT_SUBMITTED: ["申报财产", "Property report submitted"],
  PROPERTY_REPORT_VERIFIED: ["核查申报财产", "Property report verified"],
  SITE_INVESTIGATION: ["实地调查", "Site investigation"], INTERROGATION: ["询问", "Interrogation"],
  CLUE_SUBMITTED: ["提供财产线索", "Asset lead submitted"], CLUE_VERIFIED: ["核查线索", "Lead verified"],
  APPLICANT_INTERVIEW: ["约谈申请执行人", "Applicant interview"],
  APPLICANT_OPINION: ["申请执行人意见", "Applicant's opinion"],
  ZB_RULING_ISSUED: ["作出终本裁定", "终本 ruling issued"], ZB_RULING_SERVED: ["送达终本裁定", "终本 ruling served"],
  CASE_CLOSED: ["结案", "Case closed"], ZB_DB_ENTERED: ["录入终本库", "Entered in the 终本 database"],
  RULING_PUBLISHED: ["裁定公开", "Ruling published"], POST_CLOSURE_QUERY: ["终本后查询", "Post-closure query"],
  SEIZURE: ["查封扣押冻结", "Seizure / freeze"], SEIZURE_RENEWED: ["续行查封", "Seizure renewed"],
  SEIZURE_RELEASED: ["解除查封", "Seizure released"], SEIZURE_LAPSED: ["查封失效", "Seizure lapsed"],
  PROPERTY_REPORT_REFUSED: ["拒绝报告财产", "Property report refused"],
  PROPERTY_REPORT_OVERDUE: ["逾期报告财产", "Property report overdue"],
  PROPERTY_REPORT_FALSE: ["虚假报告财产", "False property report"],
  FINE: ["罚款", "Fine"], DETENTION: ["拘留", "Detention"], DISHONEST_LISTED: ["纳入失信名单", "Listed as dishonest"],
  DISHONEST_DELISTED: ["移出失信名单", "Delisted"], CONCEALMENT_FLAGGED: ["隐匿财产线索", "Concealment flagged"],
  SEARCH: ["搜查", "Search"], FUNDS_RECEIVED: ["执行款到账", "Funds received"], FUNDS_DISBURSED: ["执行款发放", "Funds paid out"],
  VALUATION_STARTED: ["启动评估", "Valuation started"], VALUATION_REPORTED: ["评估报告", "Valuation reported"],
  AUCTION_ANNOUNCED: ["拍卖公告", "Auction announced"], AUCTION_RESULT: ["拍卖结果", "Auction result"],
  REWARD_APPLIED: ["悬赏申请", "Reward applied for"], REWARD_DECIDED: ["悬赏决定", "Reward decided"],
  REWARD_PUBLISHED: ["发布悬赏", "Reward published"], HEARING: ["听证", "Hearing"],
  COLLEGIAL_REVIEW: ["合议庭评议", "Collegial review"], PRESIDENT_APPROVAL: ["院庭长审批", "President's approval"],
  DEBTOR_MISSING_FLAGGED: ["被执行人下落不明", "Debtor missing"], MISSING_DEBTOR_SEARCH: ["查找被执行人", "Search for debtor"],
  OBSTRUCTION_FLAGGED: ["妨害执行", "Obstruction flagged"], OFFLINE_INQUIRY: ["线下查询", "Offline inquiry"],
  CONSUMPTION_RESTRICTION_LIFTED: ["解除限制消费", "Restriction lifted"],
  ACCEPT_IN_KIND_OFFERED: ["以物抵债征询", "Acceptance in kind offered"],
  ACCEPT_IN_KIND_DECLINED: ["拒绝以物抵债", "Acceptance in kind declined"],
  ACCEPT_IN_KIND_ACCEPTED: ["接受以物抵债", "Acceptance in kind accepted"],
  CONTROL_MEASURE: ["控制措施", "Control measure"], RESUMED: ["恢复执行", "Resumed"],
  SUMMONS: ["传唤", "Summons"], COMPELLED_APPEARANCE: ["拘传", "Compelled appearance"],
  CRIMINAL_REFERRAL: ["移送追究刑事责任", "Criminal referral"], EXIT_RESTRICTED: ["限制出境", "Exit restricted"],
  AUDIT_APPLIED: ["申请审计", "Audit applied for"], AUDIT_DECIDED: ["审计决定", "Audit decided"], AUDIT_DONE: ["审计完成", "Audit done"],
  EXTENSION_APPROVED: ["延长期限", "Extension approved"], ZB_DB_MASKED: ["终本库屏蔽", "Masked in the 终本 database"],
  BANKRUPTCY_REFERRED: ["移送破产审查", "Referred for bankruptcy"], SUSPENDED: ["中止执行", "Suspended"],
  SUSPENSION_ENDED: ["恢复（中止结束）", "Suspension ended"], EVENT_CORRECTED: ["更正", "Correction"], EVENT_VOIDED: ["作废", "Voided"],
};

let LANG = "zh";
const PAGE = 50;
let state = { summary: null, months: null, limit: PAGE, timeInfo: false, filters: { court: "", rule: "", severity: "", kind: "" } };

const $ = (id) => document.getElementById(id);

function t(key, vars) {
  let s = (STRINGS[LANG] && STRINGS[LANG][key]) ?? STRINGS.zh[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(String(v));
  return s;
}

function el(tag, attrs, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") n.className = v;
    else if (k === "text") n.textContent = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else n.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return n;
}

function svg(tag, attrs, ...children) {
  const n = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  for (const c of children.flat(Infinity)) n.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return n;
}

function beijing(ms, withTime = true) {
  if (ms === null || ms === undefined) return "—";
  const iso = new Date(ms + BEIJING).toISOString();
  return withTime ? iso.slice(0, 16).replace("T", " ") : iso.slice(0, 10);
}

function msg(f) { return LANG === "en" ? f.message_en : f.message_zh; }
function sevBadge(s) { return el("span", { class: "sev " + s, title: t("sev." + s) }, t("sev." + s)); }
function caseLink(c) { return el("a", { href: "#/case/" + encodeURIComponent(c) }, c); }
function short(hex) { return hex ? hex.slice(0, 10) + "…" : ""; }
function pct(x) { return (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + "%"; }

function applyStatic() {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const n of document.querySelectorAll("[data-i18n]")) n.textContent = t(n.dataset.i18n);
  for (const n of document.querySelectorAll("[data-i18n-attr]")) {
    const [attr, key] = n.dataset.i18nAttr.split(":");
    n.setAttribute(attr, t(key));
  }
  $("lang").setAttribute("lang", LANG === "zh" ? "en" : "zh");
}

// ---------------------------------------------------------------------------- data

class Unauthorized extends Error {}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const r = await fetch(path, { headers: { authorization: "Bearer " + token, accept: "application/json" } });
  if (r.status === 401) throw new Unauthorized();
  if (!r.ok) {
    let detail = "HTTP " + r.status;
    try { detail += ": " + (await r.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return r.json();
}

function showError(e) {
  if (e instanceof Unauthorized) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignin(t("signin.bad"));
    return;
  }
  const box = $("error");
  box.textContent = t("error.load", { detail: e.message || String(e) });
  box.hidden = false;
}

function showSignin(error) {
  $("signin").hidden = false;
  $("overview").hidden = true;
  $("casepage").hidden = true;
  $("signout").hidden = true;
  const err = $("signin-error");
  err.hidden = !error;
  err.textContent = error || "";
  $("token").focus();
}

// ---------------------------------------------------------------------------- overview

function option(value, label, selected) {
  return el("option", { value, selected: value === selected }, label);
}

function fillFilters(s) {
  const f = state.filters;
  $("f-court").replaceChildren(option("", t("all"), f.court),
    ...Object.keys(s.courts).sort().map((c) => option(c, c, f.court)));
  $("f-rule").replaceChildren(option("", t("all"), f.rule),
    ...Object.keys(s.rules).map((r) => option(r, r, f.rule)));
  $("f-severity").replaceChildren(option("", t("all"), f.severity),
    ...SEVERITIES.map((v) => option(v, t("sev." + v) + " " + v, f.severity)));
  $("f-kind").replaceChildren(option("", t("all"), f.kind),
    option("violation", t("kind.violation"), f.kind), option("warning", t("kind.warning"), f.kind));
}

function renderStatus(s) {
  let line = t("status", { h: s.height, ah: s.applied_height, now: beijing(s.now), cases: s.cases,
    ruleset: short(s.ruleset), calendar: s.calendar });
  const last = s.reports && s.reports[s.reports.length - 1];
  if (last) line += t("status.report", { h: last.height, count: last.body.count });
  $("status-line").textContent = line;
}

function renderCards(s) {
  const cards = [];
  for (const sev of SEVERITIES) {
    const c = s.severities[sev] || { violation: 0, warning: 0 };
    cards.push(el("button", { type: "button", class: "card " + sev, "aria-pressed": String(state.filters.severity === sev),
      onclick: () => { state.filters.severity = state.filters.severity === sev ? "" : sev; refresh(); } },
      el("span", { class: "num" }, c.violation + c.warning),
      el("span", { class: "lbl" }, t("card.sev", { sev: t("sev." + sev), code: sev }))));
  }
  let warn = 0, closed = 0, improper = 0;
  for (const v of Object.values(s.severities)) warn += v.warning;
  for (const c of Object.values(s.courts)) { closed += c.closed_zb; improper += c.improper; }
  cards.push(el("button", { type: "button", class: "card WARN", "aria-pressed": String(state.filters.kind === "warning"),
    onclick: () => { state.filters.kind = state.filters.kind === "warning" ? "" : "warning"; refresh(); } },
    el("span", { class: "num" }, warn), el("span", { class: "lbl" }, t("card.warn"))));
  cards.push(el("div", { class: "card WARN" }, el("span", { class: "num" }, closed + " / " + improper),
    el("span", { class: "lbl" }, t("card.closed"))));
  $("cards").replaceChildren(...cards);
}

function shareChart(s) {
  const courts = Object.keys(s.courts).sort();
  // Drawn at the width it is shown at, so its text stays legible on a phone.
  const W = Math.max(320, Math.min(640, $("share-chart").clientWidth || 560)), row = 44, left = 70, right = W < 420 ? 100 : 130, top = 6, axis = 22;
  const H = top + row * Math.max(1, courts.length) + axis;
  const barW = W - left - right;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": t("share.title"),
    class: "share" });
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    const x = left + barW * v;
    root.append(svg("line", { x1: x, x2: x, y1: top, y2: H - axis + 4, class: "axis" }));
    root.append(svg("text", { x, y: H - 4, "text-anchor": "middle", class: "muted" }, pct(v)));
  }
  courts.forEach((c, i) => {
    const d = s.courts[c];
    const y = top + i * row;
    root.append(svg("text", { x: left - 8, y: y + row / 2 + 4, "text-anchor": "end" }, c));
    root.append(svg("rect", { x: left, y: y + 9, width: barW, height: row - 18, fill: "#eef0f3", rx: 3,
      "fill-opacity": 0.7 }));
    if (d.closed_zb) {
      root.append(svg("rect", { x: left, y: y + 9, width: Math.max(d.share > 0 ? 2 : 0, barW * d.share),
        height: row - 18, fill: d.share >= 0.5 ? "#a11212" : d.share >= 0.2 ? "#d9822b" : "#2e7d46", rx: 3 },
        svg("title", {}, `${c}: ${d.improper}/${d.closed_zb}`)));
    }
    root.append(svg("text", { x: left + barW + 8, y: y + row / 2 + 4, class: d.closed_zb ? "" : "muted" },
      d.closed_zb ? t("share.label", { k: d.improper, n: d.closed_zb, p: pct(d.share) }) : t("share.none")));
  });
  $("share-chart").replaceChildren(root);
}

function timeChart(s) {
  // s: an object with `months` ({YYYY-MM: {severity: n}}): the filtered findings over time.
  const sevs = state.timeInfo ? SEVERITIES : SEVERITIES.filter((v) => v !== "INFO");
  const months = Object.keys(s.months).filter((m) => m !== "?");
  const W = Math.max(320, Math.min(640, $("time-chart").clientWidth || 640)), H = 240, left = 40, bottom = 28, top = 10, right = 8;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": t("time.title") });
  const totals = months.map((m) => sevs.reduce((a, v) => a + (s.months[m][v] || 0), 0));
  const max = Math.max(1, ...totals);
  const step = Math.pow(10, Math.floor(Math.log10(max)));
  const tick = max / step > 5 ? step * 2 : step;
  const plotH = H - top - bottom, plotW = W - left - right;
  for (let v = 0; v <= max; v += tick) {
    const y = top + plotH - (v / max) * plotH;
    root.append(svg("line", { x1: left, x2: W - right, y1: y, y2: y, class: "axis" }));
    root.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "muted" }, v));
  }
  const bw = plotW / Math.max(1, months.length);
  const every = Math.ceil(months.length / Math.max(3, Math.floor(W / 64)));
  months.forEach((m, i) => {
    let y = top + plotH;
    const x = left + i * bw + bw * 0.15;
    for (const v of sevs) {
      const n = s.months[m][v] || 0;
      if (!n) continue;
      const h = (n / max) * plotH;
      y -= h;
      root.append(svg("rect", { x, y, width: bw * 0.7, height: h, fill: SEV_COLOURS[v] },
        svg("title", {}, `${m} ${v}: ${n}`)));
    }
    if (i % every === 0) {
      root.append(svg("text", { x: x + bw * 0.35, y: H - 8, "text-anchor": "middle", class: "muted" }, m));
    }
  });
  const legend = el("ul", { class: "legend" }, sevs.map((v) =>
    el("li", {}, el("span", { class: "sw " + v }), t("sev." + v) + " " + v)));
  const toggle = el("label", { class: "toggle" }, el("input", { type: "checkbox", checked: state.timeInfo,
    onchange: (e) => { state.timeInfo = e.target.checked; timeChart(state.months); } }), t("time.info"));
  $("time-chart").replaceChildren(root, legend, toggle);
}

function table(head, rows, numeric = []) {
  // Each cell carries its column's name, so that on a phone a row reads as a small card of
  // "name: value" lines instead of a table scrolled sideways (dashboard.css, .tbl td::before).
  for (const row of rows) {
    [...row.children].forEach((td, i) => { if (head[i]) td.dataset.label = head[i]; });
  }
  return el("table", { class: "tbl" },
    el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { class: numeric.includes(i) ? "num" : "", scope: "col" }, h)))),
    el("tbody", {}, rows));
}

function renderCourts(s) {
  const rows = Object.keys(s.courts).sort().map((c) => {
    const d = s.courts[c];
    const warns = Object.values(d.warnings).reduce((a, b) => a + b, 0);
    return el("tr", {},
      el("td", {}, el("a", { href: "#/", onclick: (e) => { e.preventDefault(); state.filters.court = c; refresh(); } }, c)),
      el("td", { class: "num" }, d.cases), el("td", { class: "num" }, d.closed_zb),
      el("td", { class: "num" }, d.improper), el("td", { class: "num" }, d.closed_zb ? pct(d.share) : "—"),
      el("td", { class: "num" }, d.violations.CRIT || 0), el("td", { class: "num" }, warns));
  });
  $("courts").replaceChildren(table([t("col.court"), t("col.cases"), t("col.closed"), t("col.improper"),
    t("col.share"), t("col.crit"), t("col.warn")], rows, [1, 2, 3, 4, 5, 6]));
}

function renderRules(s) {
  const rows = Object.values(s.rules).map((r) => el("tr", {},
    el("td", { class: "nowrap" }, el("a", { href: "#/", onclick: (e) => { e.preventDefault(); state.filters.rule = r.rule; refresh(); } }, r.rule)),
    el("td", {}, sevBadge(r.severity)),
    el("td", {}, LANG === "en" ? r.message_en : r.message_zh, el("div", { class: "note" }, r.citation)),
    el("td", { class: "num" }, r.violation), el("td", { class: "num" }, r.warning)));
  $("rules").replaceChildren(rows.length ? table([t("col.rule"), t("col.sev"), t("col.msg"), t("col.viol"),
    t("col.warn")], rows, [3, 4]) : el("p", { class: "empty" }, t("findings.none")));
}

function dueTag(w, now) {
  const days = Math.floor((w.due + BEIJING) / DAY) - Math.floor((now + BEIJING) / DAY);
  if (w.overdue) return el("span", { class: "tag overdue" }, t("overdue", { d: Math.max(1, -days) }));
  if (days <= 0) return el("span", { class: "tag soon" }, t("due.today"));
  return el("span", { class: "tag" + (days <= 7 ? " soon" : "") }, t("due.in", { d: days }));
}

function renderDeadlines(list, now) {
  if (!list.length) { $("deadlines").replaceChildren(el("p", { class: "empty" }, t("deadlines.none"))); return; }
  const rows = list.map((w) => el("tr", {},
    el("td", { class: "nowrap" }, beijing(w.due, false)), el("td", {}, dueTag(w, now)),
    el("td", { class: "nowrap" }, caseLink(w.case)), el("td", { class: "hide-phone" }, w.court),
    el("td", { class: "nowrap" }, w.rule, " ", sevBadge(w.severity)), el("td", {}, msg(w))));
  $("deadlines").replaceChildren(table([t("col.due"), t("col.state"), t("col.case"), t("col.court"),
    t("col.rule"), t("col.msg")], rows));
  for (const th of $("deadlines").querySelectorAll("th:nth-child(4)")) th.classList.add("hide-phone");
}

function renderFindings(res) {
  const shown = res.findings;
  $("findings-count").textContent = t("findings.count", { n: res.total, m: shown.length });
  if (!shown.length) { $("findings").replaceChildren(el("p", { class: "empty" }, t("findings.none"))); return; }
  const rows = shown.map((f) => el("tr", {},
    el("td", { class: "nowrap" }, caseLink(f.case)), el("td", { class: "hide-phone" }, f.court),
    el("td", { class: "nowrap" }, f.rule), el("td", {}, sevBadge(f.severity)),
    el("td", { class: "hide-phone" }, t("kind." + f.kind)), el("td", {}, msg(f)),
    el("td", { class: "nowrap hide-phone" }, f.due ? beijing(f.due, false) : "")));
  const more = res.total > shown.length ? el("button", { type: "button", class: "button more",
    onclick: () => { state.limit += PAGE * 2; refresh(); } }, t("findings.more")) : null;
  $("findings").replaceChildren(table([t("col.case"), t("col.court"), t("col.rule"), t("col.sev"),
    t("col.kind"), t("col.msg"), t("col.due")], rows), more || "");
  for (const i of [2, 5, 7]) {
    for (const th of $("findings").querySelectorAll(`th:nth-child(${i})`)) th.classList.add("hide-phone");
  }
}

async function refresh() {
  const f = state.filters;
  const q = new URLSearchParams({ limit: String(state.limit), order: "severity" });
  for (const k of ["court", "rule", "severity", "kind"]) if (f[k]) q.set(k, f[k]);
  const dq = new URLSearchParams({ limit: "100" });
  if (f.court) dq.set("court", f.court);
  try {
    const [s, res, dl] = await Promise.all([api("/v1/inspection/summary"),
      api("/v1/inspection/findings?" + q), api("/v1/inspection/deadlines?" + dq)]);
    state.summary = s;
    state.months = res;
    $("error").hidden = true;
    fillFilters(s);
    renderStatus(s);
    renderCards(s);
    shareChart(s);
    timeChart(res);
    renderCourts(s);
    renderRules(s);
    renderDeadlines(dl.warnings, s.now);
    renderFindings(res);
    document.body.dataset.loaded = "overview";
  } catch (e) { showError(e); }
}

// ---------------------------------------------------------------------------- case page

function itemText(e) {
  if (e.kind === "event") {
    const names = EVENTS[e.type];
    return names ? `${names[LANG === "en" ? 1 : 0]}（${e.type}）` : e.type;
  }
  if (e.kind === "document") return [e.doc_type, e.doc_no].filter(Boolean).join(" ");
  if (e.kind === "evidence") return [e.media_type, e.sha256 ? "SHA-256 " + short(e.sha256) : ""].filter(Boolean).join(" · ");
  return e.kind;
}

async function showCase(caseNo) {
  $("overview").hidden = true;
  $("casepage").hidden = false;
  $("case-title").textContent = caseNo;
  $("case-sub").textContent = "";
  $("case-findings").replaceChildren();
  $("case-timeline").replaceChildren();
  try {
    const c = await api("/v1/inspection/cases/" + encodeURIComponent(caseNo));
    $("error").hidden = true;
    $("case-sub").textContent = t("case.sub", { court: c.court, n: c.entries.length, f: c.findings.length,
      h: c.height, c: c.cosigned_height });
    const cited = new Set();
    const rank = (f) => SEVERITIES.indexOf(f.severity);
    const ordered = [...c.findings].sort((a, b) => rank(a) - rank(b));  // stable: report order within
    const boxes = ordered.map((f) => {
      for (const x of f.entries) cited.add(x.id);
      return el("article", { class: "finding " + f.severity },
        el("h3", {}, sevBadge(f.severity), el("span", { class: "mono" }, f.rule), el("span", { class: "tag" }, t("kind." + f.kind))),
        el("p", {}, msg(f)),
        el("p", { class: "cite" }, t("col.cite") + t("sep") + f.citation),
        f.due ? el("p", {}, t("case.due", { d: beijing(f.due, false) }), f.provisional ? t("case.provisional") : "") : null,
        f.entries.length ? el("p", { class: "cite" }, t("case.cited"), f.entries.map((x, i) => [i ? ", " : "",
          el("a", { href: "#/case/" + encodeURIComponent(caseNo), class: "mono",
            onclick: (ev) => { ev.preventDefault(); const row = document.getElementById("e-" + x.id); if (row) row.scrollIntoView({ block: "center" }); } },
          short(x.id) + (x.height !== undefined ? "@" + x.height : ""))])) : null);
    });
    $("case-findings").replaceChildren(...(boxes.length ? boxes : [el("p", { class: "empty" }, t("case.clean"))]));
    const entries = [...c.entries].sort((a, b) => ((a.occurred_at ?? a.block_time) - (b.occurred_at ?? b.block_time)) || (a.height - b.height));
    const rows = entries.map((e) => el("tr", { id: "e-" + e.entry_id, class: cited.has(e.entry_id) ? "cited" : "" },
      el("td", { class: "nowrap" }, beijing(e.occurred_at ?? e.block_time)),
      el("td", {}, t("kindname." + e.kind)), el("td", {}, itemText(e)),
      el("td", { class: "num" }, e.height), el("td", { class: "nowrap hide-phone" }, beijing(e.block_time)),
      el("td", {}, el("span", { class: "tag " + e.proof }, t("proof." + e.proof))),
      el("td", { class: "mono hide-phone", title: e.entry_id }, short(e.entry_id))));
    $("case-timeline").replaceChildren(table([t("col.time"), t("col.kind"), t("col.item"), t("col.height"),
      t("col.block_time"), t("col.proof"), t("col.entry")], rows, [3]));
    for (const i of [5, 7]) {
      for (const th of $("case-timeline").querySelectorAll(`th:nth-child(${i})`)) th.classList.add("hide-phone");
    }
    document.body.dataset.loaded = "case";
  } catch (e) { showError(e); }
}

// ---------------------------------------------------------------------------- routing

function route() {
  if (!sessionStorage.getItem(TOKEN_KEY)) { showSignin(); return; }
  $("signin").hidden = true;
  $("signout").hidden = false;
  document.body.dataset.loaded = "";
  const m = location.hash.match(/^#\/case\/(.+)$/);
  if (m) { showCase(decodeURIComponent(m[1])); return; }
  $("casepage").hidden = true;
  $("overview").hidden = false;
  refresh();
}

function init() {
  try { LANG = localStorage.getItem(LANG_KEY) === "en" ? "en" : "zh"; } catch (e) { LANG = "zh"; }
  applyStatic();
  $("lang").addEventListener("click", () => {
    LANG = LANG === "zh" ? "en" : "zh";
    try { localStorage.setItem(LANG_KEY, LANG); } catch (e) { /* private mode */ }
    applyStatic();
    route();
  });
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showSignin(); });
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!token) { showSignin(t("signin.empty")); return; }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    route();
  });
  for (const k of ["court", "rule", "severity", "kind"]) {
    $("f-" + k).addEventListener("change", (e) => { state.filters[k] = e.target.value; state.limit = PAGE; refresh(); });
  }
  window.addEventListener("hashchange", route);
  route();
}

init();
