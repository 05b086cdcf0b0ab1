// ISOLATED-world content script: relays between the page's provider (inpage.js, MAIN world,
// window.postMessage) and the service worker (a chrome.runtime port). The port is opened on
// the first request and reopened if the service worker restarted.

(() => {
  const TO_EXT = 'ulc-inpage';
  const TO_PAGE = 'ulc-relay';
  let port = null;

  const toPage = (msg) => window.postMessage({ target: TO_PAGE, ...msg }, window.location.origin);

  function connect() {
    port = chrome.runtime.connect({ name: 'ulc-page' });
    port.onMessage.addListener(toPage);
    port.onDisconnect.addListener(() => {
      port = null;
    });
    return port;
  }

  window.addEventListener('message', (event) => {
    if (event.source !== window || event.data?.target !== TO_EXT) return;
    const { id, method, params } = event.data;
    try {
      (port ?? connect()).postMessage({ type: 'request', id, method, params });
    } catch (error) {
      // The extension was reloaded or the port died between the check and the post.
      try {
        connect().postMessage({ type: 'request', id, method, params });
      } catch {
        toPage({ type: 'reply', id, error: { code: 4900, message: `the ULC extension is unreachable: ${error.message}` } });
      }
    }
  });

  // Open the port at once so events (connect) reach the page without a first request.
  try {
    connect();
  } catch {
    // extension context invalidated; requests will report it
  }
})();
