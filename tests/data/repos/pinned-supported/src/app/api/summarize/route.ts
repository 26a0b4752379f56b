import OpenAI from "openai";

// Node.js runtime (the default): runs in the vercel.json regions, never at the edge.
const client = new OpenAI();

export async function POST(req: Request) {
  const { text } = await req.json();
  const r = await client.responses.create({ model: "gpt-4.1-mini", input: `Summarise: ${text}` });
  return Response.json({ summary: r.output_text });
}
