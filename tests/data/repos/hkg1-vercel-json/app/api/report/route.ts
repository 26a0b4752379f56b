import OpenAI from "openai";

const openai = new OpenAI();

export async function POST(request: Request) {
  const { text } = await request.json();
  const completion = await openai.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: `Summarise this report:\n${text}` }],
  });
  return Response.json({ summary: completion.choices[0].message.content });
}
