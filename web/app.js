// The dashboard's entry module. Every text from the server is set with
// textContent, never as HTML.
const health = document.getElementById('health');
const snippet = document.getElementById('snippet');

snippet.textContent =
  `<script src="${location.origin}/widget.js" data-token="REPORTER_TOKEN" ` +
  `data-app-version="1.4.2"></script>`;

async function checkHealth() {
  try {
    const r = await fetch('/healthz', { cache: 'no-store' });
    health.textContent = r.ok ? 'loomd is up' : `loomd answered ${r.status}`;
    health.className = r.ok ? 'pill ok' : 'pill bad';
  } catch (e) {
    health.textContent = 'loomd does not answer';
    health.className = 'pill bad';
  }
}

checkHealth();
setInterval(checkHealth, 30000);
