window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e)); });
window.addEventListener('load', function () {
  var s = document.getElementById('page-status');
  s.setAttribute('data-errors', JSON.stringify(window.__errors));
  s.setAttribute('data-injected', String(window.__injected === undefined ? 'no' : window.__injected));
  s.setAttribute('data-loaded', '1');
});
