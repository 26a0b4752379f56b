"""Event sources: log files (Squid, nginx/Apache combined, Vercel, HAProxy, nginx stream, Envoy, Zeek,
Suricata, Cloudflare, generic JSON), packet captures and live capture."""
