import type { NextRequest } from 'next/server';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText } from 'ai';

export const config = {
  runtime: 'edge',
  regions: ['iad1'],
};

const openai = createOpenAI();

export default async function handler(req: NextRequest) {
  const { prompt } = await req.json();
  const { text } = await generateText({ model: openai('gpt-4o-mini'), prompt });
  return new Response(text);
}
