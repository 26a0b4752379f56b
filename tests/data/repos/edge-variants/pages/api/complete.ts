import { openai } from '@ai-sdk/openai';
import { generateText } from 'ai';

export const config = {
  runtime: 'edge',
  maxDuration: 30,
  api: { bodyParser: false },
};

export default async function handler(req: Request) {
  const { prompt } = await req.json();
  const { text } = await generateText({ model: openai('gpt-4o-mini'), prompt });
  return new Response(text);
}
