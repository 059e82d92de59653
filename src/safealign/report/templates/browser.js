(function () {
  var data = JSON.parse(document.getElementById('responses-data').textContent);
  var bench = document.getElementById('rb-benchmark'), cat = document.getElementById('rb-category');
  var search = document.getElementById('rb-search'), list = document.getElementById('rb-prompts');
  var out = document.getElementById('rb-out');
  function opt(sel, value, text) { var o = document.createElement('option'); o.value = value;
    o.textContent = text; sel.appendChild(o); }
  Object.keys(data.total).forEach(function (b) { opt(bench, b, b); });
  function refreshCats() {
    cat.textContent = ''; opt(cat, '', 'all categories');
    var seen = {};
    data.items.forEach(function (it) { if (it.b === bench.value && it.c && !seen[it.c]) {
      seen[it.c] = 1; opt(cat, it.c, it.c); } });
  }
  function refreshList() {
    list.textContent = '';
    var q = search.value.toLowerCase(), n = 0;
    data.items.forEach(function (it, i) {
      if (it.b !== bench.value || (cat.value && it.c !== cat.value)) return;
      if (q && it.p.toLowerCase().indexOf(q) < 0) return;
      opt(list, String(i), '#' + it.id + (it.s ? ' (sample ' + it.s + ')' : '') + ' ' + it.p.slice(0, 90));
      n++;
    });
    document.getElementById('rb-count').textContent = n + ' shown of ' + data.total[bench.value] +
      ' prompts in ' + bench.value;
    if (list.options.length) { list.selectedIndex = 0; show(); } else { out.textContent = ''; }
  }
  function show() {
    var it = data.items[Number(list.value)];
    out.textContent = '';
    var h = document.createElement('p'); h.className = 'rb-prompt';
    h.textContent = it.p; out.appendChild(h);
    var meta = document.createElement('p');
    meta.textContent = [it.c && ('category: ' + it.c), it.a && ('attack: ' + it.a),
                        it.l && ('label: ' + it.l)].filter(Boolean).join(' | ');
    out.appendChild(meta);
    var t = document.createElement('table'); t.className = 'grid';
    var tr = document.createElement('tr');
    ['variant', 'response'].concat(data.judges).forEach(function (x) {
      var th = document.createElement('th'); th.textContent = x; tr.appendChild(th); });
    t.appendChild(tr);
    it.r.forEach(function (cell, k) {
      if (!cell) return;
      var row = document.createElement('tr');
      [data.variants[k], cell.t].concat(data.judges.map(function (j) { return cell.v[j] || ''; }))
        .forEach(function (x, col) { var td = document.createElement('td'); td.textContent = x;
          if (col > 1 && /^(unsafe|compliance)/.test(x)) td.className = 'bad';
          if (col > 1 && /^(safe|refusal)$|^safe /.test(x)) td.className = 'good';
          row.appendChild(td); });
      t.appendChild(row);
    });
    out.appendChild(t);
  }
  bench.addEventListener('change', function () { refreshCats(); refreshList(); });
  cat.addEventListener('change', refreshList);
  search.addEventListener('input', refreshList);
  list.addEventListener('change', show);
  refreshCats(); refreshList();
  document.getElementById('responses').setAttribute('data-ready', String(data.items.length));
})();
