export async function GET() {
  return new Response("id,total\n1,42\n", { headers: { "content-type": "text/csv" } });
}
