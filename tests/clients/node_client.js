// Drives Node google-auth-library the way an application would, for tests/it/client_libraries.rs.
//
// usage: node node_client.js CONFIG   (NODE_MODULES_DIR points at the installed node_modules)
// Prints one JSON line: {"ok": true, "token": ...} or {"ok": false, "error": ...}.
'use strict';
const path = require('path');
const {GoogleAuth} = require(path.join(process.env.NODE_MODULES_DIR, 'google-auth-library'));

async function main() {
  const keyFile = process.argv[2];
  try {
    const auth = new GoogleAuth({keyFile, scopes: ['https://www.googleapis.com/auth/cloud-platform']});
    const client = await auth.getClient();
    const {token} = await client.getAccessToken();
    console.log(JSON.stringify({ok: true, token, class: client.constructor.name}));
  } catch (e) {
    console.log(JSON.stringify({ok: false, error: `${e.name}: ${e.message}`}));
  }
}

main();
