export const runtime = "edge";
export const preferredRegion = "auto";

export async function POST(req: Request) {
  const body = await req.text();
  return fetch("https://api.openai.com/v1/chat/completions", {
    method: "POST",
    headers: { Authorization: `Bearer ${process.env.OPENAI_API_KEY}`, "Content-Type": "application/json" },
    body,
  });
}
